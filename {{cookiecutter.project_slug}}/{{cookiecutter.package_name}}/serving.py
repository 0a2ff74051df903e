"""Serving from the registry: load a version's model from the store, rank for one user or for everyone.

A version is judged by the model its run evaluated, trained on the train split only. Once it is promoted it
is served by a refit: the same config and seed on its whole snapshot (`refit_for_serving`), so a user's
held-out events count as seen and are never recommended back. The registry keeps the refit beside the
evaluated model; `load_model` serves the refit where a version has one, and judging asks for the evaluated
model (`served=False`): the refit has seen the test events.

The refit also stores its top items for every user it knows (its top table), so `recommend --user` is a lookup
in that table (`stored_recommendations`) and imports no torch: the model is loaded, and torch with it, only
where the table cannot answer.

Reads only the registry and the artifact store, so it runs anywhere both are reachable (a batch job, an API).
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from .artifacts import ArtifactRef, ArtifactStore, runs
from .artifacts.manifest import read_manifest
from .artifacts.registry import CHAMPION, ModelVersion, Registry, VersionNotFound
from .settings import ModelConfig

if TYPE_CHECKING:  # torch and numpy are imported where a model is loaded or ranks, not by a table lookup
    from .models import Recommender

_BATCH = 2_048  # users ranked per batch by `recommend_all`, so memory stays bounded at any catalogue size
_LATENCY_USERS = 1_000
# The top table keeps up to 100 items per user, fewer where there are many users, so it stays about a million
# rows (10-20 MB of Parquet, read and hashed whole by a lookup): 100 at ml-1m's 6k users, 10 at 200k users.
_TOP_ROWS, _TOP_MIN, _TOP_MAX = 1_000_000, 10, 100


def load_model(
    registry: Registry,
    store: ArtifactStore,
    key: int | str = CHAMPION,
    dataset: str | None = None,
    served: bool = True,
) -> tuple[ModelVersion, Recommender]:
    """A registered version (number, `champion`, `challenger` or `latest` of `dataset`) and its model,
    checked by hash: the refit it is served by when it has one (`served`), else the evaluated model.

    A version of another dataset than `dataset` is refused: its ids mean other users and items.
    """
    version = served_version(registry, key, dataset)
    entry = version.serving["model"] if served and version.serving else version.artifact("model")
    return version, _fetch(store, ArtifactRef(**entry))


def served_version(registry: Registry, key: int | str = CHAMPION, dataset: str | None = None) -> ModelVersion:
    """The registered version `key` names, refused when it is a model of another dataset than `dataset`."""
    version = registry.get(key, dataset)
    if dataset is not None and version.dataset != dataset:
        raise VersionNotFound(
            f"version {version.version} is a model of dataset {version.dataset}, not of {dataset} "
            f"(set data.name={version.dataset} to use it)"
        )
    return version


def refit_for_serving(
    registry: Registry, store: ArtifactStore, version: int, actor: str
) -> tuple[dict[str, Any], bool]:
    """Refit `version` on its whole snapshot, store the model and record it for the version; returns the
    serving entry and whether it was refit now (False: the version had one already). The entry is also
    noted in the status of the run that registered the version.

    Same model config and seed as its run (from the run's manifest), its torch thread count, and the evaluated
    model's own hyperparameters (see `training.refit`), so the refit is reproducible from the registry.
    The entry also holds the refit's top table (`stored_recommendations` reads it).
    """
    held = registry.get(version)
    if held.serving is not None:  # a rerun of a champion's run: it imports neither torch nor training
        return held.serving, False
    import torch

    from . import training  # the refit only: `recommend` loads this module and needs none of training

    manifest = read_manifest(json.loads(store.read_text(f"runs/{held.run_id}/{runs.MANIFEST_NAME}")))
    cfg = ModelConfig.model_validate(manifest.config["model"])
    seed, threads = manifest.seed, manifest.environment.torch.threads
    evaluated = _fetch(store, ArtifactRef(**held.artifact("model")))
    snapshot = store.get_frame(ArtifactRef(**held.artifact("snapshot")))
    started = time.perf_counter()
    model = training.refit(cfg, snapshot, seed, threads, evaluated.config)
    seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        model.save(path)
        ref = store.put_file(path, kind="serving-model")
    depth = top_depth(model.n_users)
    top = store.put_frame(recommend_all(model, depth), kind="serving-top")
    entry = {
        "model": ref.model_dump(),
        "top": top.model_dump(),
        "top_k": depth,
        "evaluated_model": held.model_id,
        "snapshot": held.artifact("snapshot")["id"],
        "interactions": snapshot.height,
        "seed": seed,
        "threads": threads or torch.get_num_threads(),
        "seconds": round(seconds, 3),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "by": actor,
    }
    registry.set_serving(version, entry)
    # Beside the run that made the evaluated model: lineage links the two, and `models rebuild` restores it.
    runs.update_status(store, held.run_id, registry={"serving": entry})
    return entry, True


def top_depth(n_users: int) -> int:
    """How many items per user the top table keeps for a model that knows `n_users` users."""
    return max(_TOP_MIN, min(_TOP_MAX, _TOP_ROWS // max(n_users, 1)))


def stored_recommendations(
    store: ArtifactStore, version: ModelVersion, users: list[int], k: int
) -> pl.DataFrame | None:
    """`recommend_users`' frame for `users` from the serving refit's stored top table, without the model;
    None where the table cannot answer and the model must rank: the version has no table (never promoted,
    or refit before tables), k is deeper than it, or a user has no rows in it (unknown to the model, who
    gets the popularity fallback, or with no unseen item left)."""
    entry = version.serving or {}
    if "top" not in entry or k > int(entry["top_k"]):
        return None
    # The table is `recommend_all` at depth top_k: ties rank in item id order, so a user's top k for any k up
    # to that depth is the start of their rows, the same items, scores and ranks as the model's top k.
    table = store.get_frame(ArtifactRef(**entry["top"])).filter(pl.col("rank") <= k)
    order = {u: i for i, u in enumerate(dict.fromkeys(users))}
    asked = pl.DataFrame({"user_id": users}, schema={"user_id": pl.Int64})
    found = asked.join(table, on="user_id", how="inner")  # a user asked for twice gets their rows twice
    if found.get_column("user_id").n_unique() < len(order):
        return None
    ranked = found.with_columns(pl.col("user_id").replace_strict(order, return_dtype=pl.Int64).alias("_o"))
    return ranked.sort("_o", "rank").drop("_o").select("user_id", "item_id", "score", "rank")


def recommend_users(model: Recommender, users: list[int], k: int) -> tuple[pl.DataFrame, list[int]]:
    """Top-k unseen items for `users`, in the order given, and the users the model does not know: they get
    the most popular items of its training data (for a refit, the snapshot) instead.

    Columns user_id, item_id, score, rank (a fallback row's score is the item's count of users)."""
    known = model.recommend(users, k)
    index = model.vocabulary.user_index(users) if model.vocabulary is not None else [-1] * len(users)
    unknown = list(dict.fromkeys(u for u, i in zip(users, index, strict=True) if i < 0))
    if not unknown and len(set(users)) == len(users):
        return known, unknown  # the model's rows are already in the users' order, each user's by rank
    popular = most_popular(model, k)
    fallback = [popular.select(pl.lit(u, dtype=pl.Int64).alias("user_id"), pl.all()) for u in unknown]
    frame = pl.concat([known, *fallback]) if fallback else known
    order = {u: i for i, u in enumerate(dict.fromkeys(users))}
    ranked = frame.with_columns(pl.col("user_id").replace_strict(order, return_dtype=pl.Int64).alias("_o"))
    return ranked.sort("_o", "rank").drop("_o"), unknown


def most_popular(model: Recommender, k: int) -> pl.DataFrame:
    """The k items most users interacted with in the model's training data: item_id, score (users), rank.
    Ties rank by item id, as everywhere (`base.top_k`)."""
    import numpy as np
    import torch

    from .models.base import top_k

    vocab = model.vocabulary
    if vocab is None:
        raise ValueError("most_popular needs a fitted model")
    _, items = model.user_pairs()
    counts = torch.bincount(items, minlength=vocab.n_items).to(torch.float32)
    values, indices = top_k(counts.unsqueeze(0), k)
    return pl.DataFrame(
        {
            "item_id": vocab.items[indices[0].numpy()],
            "score": values[0].numpy(),
            "rank": np.arange(1, indices.shape[1] + 1),
        },
        schema={"item_id": pl.Int64, "score": pl.Float32, "rank": pl.Int64},
    )


def recommend_all(model: Recommender, k: int) -> pl.DataFrame:
    """Top-k unseen items for every user the model knows: user_id, item_id, score, rank."""
    import numpy as np

    users = model.vocabulary.users if model.vocabulary is not None else np.zeros(0, dtype=np.int64)
    parts = [model.recommend(users[start : start + _BATCH], k) for start in range(0, users.size, _BATCH)]
    return pl.concat(parts) if parts else model.recommend([], k)


def latency_per_1k(model: Recommender, k: int) -> dict[str, float]:
    """Milliseconds to rank the top k for 1,000 users, best of 3: the first 1,000 by id, or, with fewer, the
    known users repeated up to 1,000 (one user timed once and scaled up would hide every per-batch cost)."""
    import numpy as np

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


def _fetch(store: ArtifactStore, ref: ArtifactRef) -> Recommender:
    from .models import Recommender

    with tempfile.TemporaryDirectory() as tmp:
        return Recommender.load(store.fetch_file(ref, Path(tmp) / "model.safetensors"))
