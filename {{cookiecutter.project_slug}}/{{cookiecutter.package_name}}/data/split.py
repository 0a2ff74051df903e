"""Train/test splits of an interactions frame. Pure: same frame and seed, same split."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import polars as pl

from ..settings import SplitConfig


class Split(NamedTuple):
    train: pl.DataFrame
    test: pl.DataFrame


def split(frame: pl.DataFrame, cfg: SplitConfig, seed: int) -> Split:
    if frame.height < 2:
        raise ValueError(f"cannot split {frame.height} interaction(s) into train and test")
    if cfg.strategy == "temporal":
        return temporal_split(frame, cfg.test_fraction)
    return random_split(frame, cfg.test_fraction, seed)


def temporal_split(frame: pl.DataFrame, test_fraction: float) -> Split:
    """Global temporal holdout: events at or after the cut-off time are the test set.

    The cut-off is the timestamp at the (1 - test_fraction) quantile of events, so every test event happens
    after every training event, as it would in production. Ties at the cut-off all go to test.
    """
    ordered = frame.sort("timestamp", "user_id", "item_id", maintain_order=True)
    cut_row = min(int(round(ordered.height * (1 - test_fraction))), ordered.height - 1)
    cutoff = ordered.get_column("timestamp")[cut_row]
    is_test = pl.col("timestamp") >= cutoff
    return Split(ordered.filter(~is_test), ordered.filter(is_test))


def random_split(frame: pl.DataFrame, test_fraction: float, seed: int) -> Split:
    """Global random holdout of `test_fraction` of events: a seeded permutation of the canonical order."""
    ordered = frame.sort("timestamp", "user_id", "item_id", maintain_order=True)
    n_train = int(round(ordered.height * (1 - test_fraction)))
    is_train = np.zeros(ordered.height, dtype=bool)
    is_train[np.random.default_rng(seed).permutation(ordered.height)[:n_train]] = True
    mask = pl.Series(is_train)
    return Split(ordered.filter(mask), ordered.filter(~mask))
