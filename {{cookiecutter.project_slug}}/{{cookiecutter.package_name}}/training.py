"""Seeding and training: the same data, config and seed give the same weights on CPU."""

from __future__ import annotations

import logging
import random
import time

import numpy as np
import polars as pl
import torch

from .models import Recommender, build_model
from .settings import ModelConfig

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch and ask torch for deterministic kernels.

    Models draw from their own `torch.Generator` (seeded in `fit`); this covers anything that does not.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def train(cfg: ModelConfig, interactions: pl.DataFrame, seed: int) -> Recommender:
    """Build the configured model and fit it on `interactions` (the model gets its own seeded generator)."""
    seed_everything(seed)
    model = build_model(cfg)
    started = time.perf_counter()
    model.fit(interactions, seed)
    log.info(
        "%s fitted on %d interactions (%d users, %d items) in %.2fs",
        cfg.name,
        interactions.height,
        model.n_users,
        model.n_items,
        time.perf_counter() - started,
    )
    return model
