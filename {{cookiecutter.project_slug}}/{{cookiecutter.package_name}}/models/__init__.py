"""Recommenders behind one protocol (`base.Recommender`), selected by name in config."""

from ..settings import ModelConfig
from .base import Recommender, Vocabulary
from .bpr import BPR
from .ease import EASE
from .ials import IALS
from .itemknn import ItemKNN
from .popularity import Popularity

MODELS: dict[str, type[Recommender]] = {cls.name: cls for cls in (Popularity, ItemKNN, EASE, BPR, IALS)}


def build_model(cfg: ModelConfig) -> Recommender:
    """An unfitted model of the kind `cfg.name` names, with its own section of the config."""
    return MODELS[cfg.name](getattr(cfg, cfg.name))


__all__ = [
    "BPR",
    "EASE",
    "IALS",
    "MODELS",
    "ItemKNN",
    "Popularity",
    "Recommender",
    "Vocabulary",
    "build_model",
]
