"""Train/test splits of an interactions frame, after optional filtering. Same frame and seed, same split.

Protocols (`split.strategy`):
- temporal: every event at or after the (1 - test_fraction) time quantile is test (what production sees);
- random: a seeded global holdout of test_fraction of events;
- leave-last-out: each user's latest event is test (users with a single event stay in train);
- user-random: a seeded test_fraction of each user's events is test (at least one event stays in train).
Filters, applied first: `min_rating` (keep events rated at least that: explicit ratings as implicit positives)
and `k_core` (repeatedly drop users and items with fewer than k events until none is left).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import polars as pl

from ..settings import SplitConfig

ORDER = ("timestamp", "user_id", "item_id")


class Split(NamedTuple):
    train: pl.DataFrame
    test: pl.DataFrame


def split(frame: pl.DataFrame, cfg: SplitConfig, seed: int) -> Split:
    frame = filter_interactions(frame, cfg.k_core, cfg.min_rating)
    if frame.height < 2:
        raise ValueError(f"cannot split {frame.height} interaction(s) into train and test")
    if cfg.strategy == "temporal":
        return temporal_split(frame, cfg.test_fraction)
    if cfg.strategy == "random":
        return random_split(frame, cfg.test_fraction, seed)
    if cfg.strategy == "leave-last-out":
        return leave_last_out(frame)
    return user_random_split(frame, cfg.test_fraction, seed)


def filter_interactions(
    frame: pl.DataFrame, k_core: int = 0, min_rating: float | None = None
) -> pl.DataFrame:
    if min_rating is not None:
        if "rating" not in frame.columns:
            raise ValueError("split.min_rating is set but the data has no rating column")
        frame = frame.filter(pl.col("rating") >= min_rating)
    while k_core > 1:
        kept = frame.filter((pl.len().over("user_id") >= k_core) & (pl.len().over("item_id") >= k_core))
        if kept.height == frame.height:
            break
        frame = kept
    return frame


def temporal_split(frame: pl.DataFrame, test_fraction: float) -> Split:
    """Global temporal holdout: events at or after the cut-off time are the test set.

    The cut-off is the timestamp at the (1 - test_fraction) quantile of events, so every test event happens
    after every training event, as it would in production. Ties at the cut-off all go to test.
    """
    ordered = frame.sort(ORDER, maintain_order=True)
    cut_row = min(int(round(ordered.height * (1 - test_fraction))), ordered.height - 1)
    cutoff = ordered.get_column("timestamp")[cut_row]
    is_test = pl.col("timestamp") >= cutoff
    return Split(ordered.filter(~is_test), ordered.filter(is_test))


def random_split(frame: pl.DataFrame, test_fraction: float, seed: int) -> Split:
    """Global random holdout of `test_fraction` of events: a seeded permutation of the canonical order."""
    ordered = frame.sort(ORDER, maintain_order=True)
    n_train = int(round(ordered.height * (1 - test_fraction)))
    is_train = np.zeros(ordered.height, dtype=bool)
    is_train[np.random.default_rng(seed).permutation(ordered.height)[:n_train]] = True
    mask = pl.Series(is_train)
    return Split(ordered.filter(mask), ordered.filter(~mask))


def leave_last_out(frame: pl.DataFrame) -> Split:
    """Each user's latest event (by timestamp, then item id) is test; one-event users stay in train."""
    ordered = frame.sort(ORDER, maintain_order=True)
    position = pl.int_range(pl.len()).over("user_id")  # 0 = the user's first event in time order
    is_test = (position == pl.len().over("user_id") - 1) & (pl.len().over("user_id") > 1)
    marked = ordered.with_columns(is_test.alias("_test"))
    return Split(marked.filter(~pl.col("_test")).drop("_test"), marked.filter(pl.col("_test")).drop("_test"))


def user_random_split(frame: pl.DataFrame, test_fraction: float, seed: int) -> Split:
    """A seeded `test_fraction` of each user's events is test, rounded, leaving at least one in train."""
    ordered = frame.sort(ORDER, maintain_order=True)
    draw = pl.Series("_draw", np.random.default_rng(seed).random(ordered.height))
    n_test = (pl.len().over("user_id") * test_fraction).round().clip(upper_bound=pl.len().over("user_id") - 1)
    marked = ordered.with_columns(draw).with_columns(
        (pl.col("_draw").rank("ordinal").over("user_id") <= n_test).alias("_test")
    )
    keep = ordered.columns
    return Split(marked.filter(~pl.col("_test")).select(keep), marked.filter(pl.col("_test")).select(keep))
