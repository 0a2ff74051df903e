"""Train/test splits of an interactions frame, after optional filtering. Same frame and seed, same split.

Protocols (`split.strategy`):
- auto (the default): temporal when the data has timestamps, else random;
- temporal: every event at or after the (1 - test_fraction) time quantile is test (what production sees);
- random: a seeded global holdout of test_fraction of events;
- leave-last-out: each user's latest event is test (users with a single event stay in train);
- user-random: a seeded test_fraction of each user's events is test (at least one event stays in train).
Data without timestamps keeps the order events arrived in; the protocols that need time (temporal,
leave-last-out) refuse it with the setting to change.
Repeated rows of one event are kept once. Filters, applied first: `min_rating` (keep events rated at least
that: explicit ratings as implicit positives) and `k_core` (repeatedly drop users and items with fewer than k
events until none is left). The split step checks every split it makes for leakage (`leakage.py`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import polars as pl

from ..settings import SplitConfig
from .schema import event_key, ordered

NEEDS_TIME = ("temporal", "leave-last-out")


class SplitRefused(ValueError):
    """The protocol cannot split this data (no timestamps, too few events); the message says what to set."""


class Split(NamedTuple):
    """The two parts of a split, under the interactions contract."""

    train: pl.DataFrame
    test: pl.DataFrame


def resolved_strategy(strategy: str, has_time: bool) -> str:
    """The protocol `strategy` names for data with (or without) timestamps; `auto` picks one."""
    if strategy == "auto":
        return "temporal" if has_time else "random"
    if strategy in NEEDS_TIME and not has_time:
        raise SplitRefused(
            f"split.strategy={strategy} needs event times and this data has none (data.columns.timestamp is "
            "null): set split.strategy=random (or user-random, or auto)"
        )
    return strategy


def describe_strategy(strategy: str, has_time: bool) -> str:
    """The protocol as a summary says it: `random (auto: the data has no timestamps)`."""
    chosen = resolved_strategy(strategy, has_time)
    if strategy != "auto":
        return chosen
    return f"{chosen} (auto: {'the data has timestamps' if has_time else 'the data has no timestamps'})"


def split(frame: pl.DataFrame, cfg: SplitConfig, seed: int) -> Split:
    """Dedupe, filter, then split by `split.strategy`; SplitRefused when the data cannot be split that way."""
    strategy = resolved_strategy(cfg.strategy, "timestamp" in frame.columns)
    # One row per event: a row repeated in the source could otherwise land on both sides (the leakage check
    # would then refuse the split). Data without repeats keeps its rows and their order.
    frame = frame.unique(event_key(frame), keep="first", maintain_order=True)
    frame = filter_interactions(frame, cfg.k_core, cfg.min_rating)
    if frame.height < 2:
        raise SplitRefused(f"cannot split {frame.height} interaction(s) into train and test")
    if strategy == "temporal":
        return temporal_split(frame, cfg.test_fraction)
    if strategy == "random":
        return random_split(frame, cfg.test_fraction, seed)
    if cfg.strategy == "leave-last-out":
        return leave_last_out(frame)
    return user_random_split(frame, cfg.test_fraction, seed)


def filter_interactions(
    frame: pl.DataFrame, k_core: int = 0, min_rating: float | None = None
) -> pl.DataFrame:
    """Events rated at least `min_rating` (None: all), then the `k_core` of users and items (< 2: all)."""
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
    rows = ordered(frame)
    cut_row = min(int(round(rows.height * (1 - test_fraction))), rows.height - 1)
    cutoff = rows.get_column("timestamp")[cut_row]
    is_test = pl.col("timestamp") >= cutoff
    return Split(rows.filter(~is_test), rows.filter(is_test))


def random_split(frame: pl.DataFrame, test_fraction: float, seed: int) -> Split:
    """Global random holdout of `test_fraction` of events: a seeded permutation of the canonical order."""
    rows = ordered(frame)
    n_train = int(round(rows.height * (1 - test_fraction)))
    is_train = np.zeros(rows.height, dtype=bool)
    is_train[np.random.default_rng(seed).permutation(rows.height)[:n_train]] = True
    mask = pl.Series(is_train)
    return Split(rows.filter(mask), rows.filter(~mask))


def leave_last_out(frame: pl.DataFrame) -> Split:
    """Each user's latest event (by timestamp, then item id) is test; one-event users stay in train."""
    position = pl.int_range(pl.len()).over("user_id")  # 0 = the user's first event in time order
    is_test = (position == pl.len().over("user_id") - 1) & (pl.len().over("user_id") > 1)
    marked = ordered(frame).with_columns(is_test.alias("_test"))
    return Split(marked.filter(~pl.col("_test")).drop("_test"), marked.filter(pl.col("_test")).drop("_test"))


def user_random_split(frame: pl.DataFrame, test_fraction: float, seed: int) -> Split:
    """A seeded `test_fraction` of each user's events is test, rounded, leaving at least one in train."""
    rows = ordered(frame)
    draw = pl.Series("_draw", np.random.default_rng(seed).random(rows.height))
    n_test = (pl.len().over("user_id") * test_fraction).round().clip(upper_bound=pl.len().over("user_id") - 1)
    marked = rows.with_columns(draw).with_columns(
        (pl.col("_draw").rank("ordinal").over("user_id") <= n_test).alias("_test")
    )
    keep = rows.columns
    return Split(marked.filter(~pl.col("_test")).select(keep), marked.filter(pl.col("_test")).select(keep))
