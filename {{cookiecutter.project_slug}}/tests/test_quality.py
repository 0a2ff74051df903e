"""A model that learns must beat popularity clearly: on the built-in synthetic data and on MovieLens 100K."""

from __future__ import annotations

from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.data import sources
from {{ cookiecutter.package_name }}.data.split import random_split, temporal_split
from {{ cookiecutter.package_name }}.evaluation import evaluate
from {{ cookiecutter.package_name }}.settings import DataConfig, ModelConfig, SyntheticConfig
from {{ cookiecutter.package_name }}.training import train

pytestmark = pytest.mark.e2e


def _ndcg(name: str, parts, seed: int = 42) -> float:
    model = train(ModelConfig(name=name), parts.train, seed)
    return evaluate(model, parts.train, parts.test, ks=[10]).summary["ndcg@10"]


def test_learned_models_beat_popularity_on_synthetic_temporal_split() -> None:
    frame = sources.load(DataConfig(synthetic=SyntheticConfig()), seed=42)
    parts = temporal_split(frame, 0.2)
    popularity = _ndcg("popularity", parts)
    assert _ndcg("ease", parts) > 1.3 * popularity
    assert _ndcg("bpr", parts) > 1.2 * popularity
    assert _ndcg("ials", parts) > 1.2 * popularity


def test_ml100k_random_80_20_matches_reference_figures(ml100k: Path) -> None:
    """Reference figures on this protocol: popularity 0.219, ItemKNN 0.395, EASE 0.444 (0.426-0.461)."""
    parts = random_split(sources.load(DataConfig(source="movielens", path=ml100k), seed=0), 0.2, seed=42)
    popularity, ease = _ndcg("popularity", parts), _ndcg("ease", parts)
    assert abs(popularity - 0.219) < 0.01
    assert 0.426 <= ease <= 0.461
    assert _ndcg("bpr", parts) > 1.3 * popularity
    assert _ndcg("itemknn", parts) >= 0.38  # the reference measured 0.395 for ItemKNN-cosine
    assert _ndcg("ials", parts) >= 0.35  # ahead of the implicit library's ALS here (0.354)
