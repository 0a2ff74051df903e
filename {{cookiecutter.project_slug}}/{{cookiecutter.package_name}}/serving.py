"""Serving from the registry: load a version's model from the store, rank for one user or for everyone.

Reads only the registry and the artifact store, so it runs anywhere both are reachable (a batch job, an API).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from .artifacts import ArtifactRef, ArtifactStore
from .artifacts.registry import ModelVersion, Registry
from .models import Recommender

_BATCH = 2_048  # users ranked per batch by `recommend_all`, so memory stays bounded at any catalogue size
_LATENCY_USERS = 1_000


def load_model(
    registry: Registry, store: ArtifactStore, key: int | str = "champion"
) -> tuple[ModelVersion, Recommender]:
    """A registered version (number, `champion`, `challenger` or `latest`) and its model, checked by hash."""
    version = registry.get(key)
    ref = ArtifactRef(**version.artifact("model"))
    with tempfile.TemporaryDirectory() as tmp:
        return version, Recommender.load(store.fetch_file(ref, Path(tmp) / "model.safetensors"))


def recommend_all(model: Recommender, k: int) -> pl.DataFrame:
    """Top-k unseen items for every user the model knows: user_id, item_id, score, rank."""
    users = model.vocabulary.users if model.vocabulary is not None else np.zeros(0, dtype=np.int64)
    parts = [model.recommend(users[start : start + _BATCH], k) for start in range(0, users.size, _BATCH)]
    return pl.concat(parts) if parts else model.recommend([], k)


def latency_per_1k(model: Recommender, k: int) -> dict[str, float]:
    """Milliseconds to rank the top k for 1,000 users, best of 3: the first 1,000 by id, or, with fewer, the
    known users repeated up to 1,000 (one user timed once and scaled up would hide every per-batch cost)."""
    users = model.vocabulary.users if model.vocabulary is not None else np.zeros(0, dtype=np.int64)
    if users.size == 0:
        raise ValueError("latency needs a fitted model with at least one user")
    ranked = np.resize(users[:_LATENCY_USERS], _LATENCY_USERS)  # np.resize repeats a short array
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        model.recommend(ranked, k)
        best = min(best, time.perf_counter() - started)
    distinct = min(users.size, _LATENCY_USERS)
    return {"ms_per_1k": best * 1_000, "users": float(distinct), "ranked": float(ranked.size), "k": float(k)}
