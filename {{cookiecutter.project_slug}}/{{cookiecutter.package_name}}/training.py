"""Seeding and training: the same data, config and seed give the same weights on CPU."""

from __future__ import annotations

import logging
import random
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from pydantic import BaseModel
from tqdm import tqdm

from .data.split import random_split
from .evaluation import evaluate
from .models import Recommender, build_model
from .settings import EASEConfig, ModelConfig, TrainingConfig

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch, ask torch for deterministic kernels, and return a generator seeded alike.

    Models draw from their own `torch.Generator` (seeded in `fit`); the global seeds cover anything that does
    not. Bit-for-bit equality holds for the same seed on the same torch build and thread count.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    deterministic_kernels()
    return torch.Generator().manual_seed(seed)


def deterministic_kernels() -> None:
    """Ask torch for deterministic kernels, as `torch.use_deterministic_algorithms(True)` does for eager code.

    That function also sets the flag in torch.compile's config, importing torch._inductor and torch._dynamo
    to do so: 1.6 s of every training process's start (torch 2.13), for a compiler nothing here uses. So
    the kernel flag is set alone unless the compiler is already loaded;
    `torch.are_deterministic_algorithms_enabled()` reads it either way (tests check it, and every run's
    recorded environment holds it).
    """
    if "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=False)


def train(
    cfg: ModelConfig, interactions: pl.DataFrame, seed: int, reporting: TrainingConfig | None = None
) -> Recommender:
    """Build the configured model and fit it on `interactions` (the model gets its own seeded generator).

    Iterative models (bpr, ials) show an epoch progress bar on a terminal and, with `checkpoint_every`, save
    a safetensors checkpoint every N epochs, loadable with `Recommender.load` like any saved model.
    """
    reporting = reporting or TrainingConfig()
    seed_everything(seed)
    if cfg.name == "ease" and cfg.ease.l2_search:
        cfg = cfg.model_copy(
            update={"ease": cfg.ease.model_copy(update={"l2": best_ease_l2(cfg, interactions, seed)})}
        )
    model = build_model(cfg)
    started = time.perf_counter()
    total = {"bpr": cfg.bpr.epochs, "ials": cfg.ials.iterations}.get(cfg.name)
    # disable=None: a bar on a terminal only, so logs and CI output stay free of carriage returns.
    disable = None if reporting.progress_bar else True
    with tqdm(total=total, desc=cfg.name, unit="epoch", disable=disable) as bar:

        def on_epoch(fitted: Recommender, record: dict[str, float]) -> None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k != "epoch"})
            every = reporting.checkpoint_every
            if every and record["epoch"] % every == 0:
                save_checkpoint(fitted, Path(reporting.checkpoint_dir), int(record["epoch"]))

        model.fit(interactions, seed, on_epoch=on_epoch)
    log.info(
        "%s fitted on %d interactions (%d users, %d items) in %.2fs",
        cfg.name,
        interactions.height,
        model.n_users,
        model.n_items,
        time.perf_counter() - started,
    )
    return model


def save_checkpoint(model: Recommender, directory: Path, epoch: int) -> Path:
    """`<dir>/<model>-epoch-<NNN>.safetensors`, written whole then renamed: a crash leaves no half file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{model.name}-epoch-{epoch:03d}.safetensors"
    partial = path.with_suffix(".partial")
    model.save(partial)
    partial.replace(path)
    log.info("checkpoint %s", path)
    return path


def best_ease_l2(cfg: ModelConfig, interactions: pl.DataFrame, seed: int) -> float:
    """The `ease.l2_search` candidate with the best NDCG@10 on a seeded inner 90/10 split of the data."""
    inner = random_split(interactions, 0.1, seed)
    scores = {}
    for l2 in cfg.ease.l2_search:
        model = build_model(cfg.model_copy(update={"ease": cfg.ease.model_copy(update={"l2": l2})}))
        model.fit(inner.train, seed)
        scores[l2] = evaluate(model, inner.train, inner.test, [10]).summary["ndcg@10"]
    best = max(scores, key=lambda l2: (scores[l2], -l2))  # ties: the stronger penalty
    log.info("ease l2 search on an inner split: %s -> %s", {k: round(v, 4) for k, v in scores.items()}, best)
    return best


def refit(
    cfg: ModelConfig,
    interactions: pl.DataFrame,
    seed: int,
    threads: int | None = None,
    fitted: BaseModel | None = None,
) -> Recommender:
    """The model to serve once a version is promoted: its config and seed fitted on `interactions`, the whole
    snapshot, so it knows every event a user has (and never recommends one back).

    `fitted` is the evaluated model's own section of the config: an ease l2 that `l2_search` picked on the
    training split is kept, not searched again on data that holds the test events. `threads` is the torch
    thread count the version was trained with (a different count changes the last bits of the weights), set
    for the fit and restored after.
    """
    if fitted is not None:
        if isinstance(fitted, EASEConfig):
            fitted = fitted.model_copy(update={"l2_search": []})
        cfg = cfg.model_copy(update={cfg.name: fitted})
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return train(cfg, interactions, seed, TrainingConfig(progress_bar=False))
    finally:
        torch.set_num_threads(before)
