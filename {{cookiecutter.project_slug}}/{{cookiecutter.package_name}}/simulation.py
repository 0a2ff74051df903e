"""The batches `simulate` replays: a dataset cut by time into an initial load and later batches, one of them
shifted (drift) and one corrupt (quarantine). Pure: frames in, named CSV bytes out.

Order: initial (the first `initial_share` of events), then the rest in `n_batches` time-ordered batches with
the corrupt one and the shifted one at fixed places:
    initial, normal, corrupt (a copy of the next batch with timestamps in milliseconds, or, for data without
    timestamps, with text user ids), normal, ..., shifted.
Data without timestamps is cut in the order its events arrived.
The shifted batch keeps its users but moves every event to an item of opposite popularity (the most popular
item's events go to the least popular one, and so on) and to 03:00 of its day: an audience turning to the
long tail at night. It still passes validation (known items, sane times), so only drift monitoring sees it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import polars as pl

from .data.schema import COLUMNS, ordered


@dataclass(frozen=True)
class Batch:
    """One batch to replay, as the CSV bytes to land and what kind of batch it is."""

    name: str
    kind: str  # initial | normal | corrupt | shifted
    rows: int
    data: bytes  # CSV with the contract's columns

    def describe(self) -> str:
        """The kind of batch in words, for `simulate`'s progress lines."""
        return {
            "initial": "initial load",
            "normal": "normal batch",
            "corrupt": "corrupt batch (timestamps in milliseconds, or text ids)",
            "shifted": "shifted batch (long-tail items, at night)",
        }[self.kind]


def plan_batches(frame: pl.DataFrame, n_batches: int = 4, initial_share: float = 0.6) -> list[Batch]:
    """The initial load, then `n_batches` (at least 3) later batches in time order; no randomness."""
    if n_batches < 3:
        raise ValueError("simulate needs at least 3 later batches: normal, corrupt, shifted")
    rows = ordered(frame)
    cut = int(rows.height * initial_share)
    rest = rows.slice(cut)
    size = rest.height // n_batches
    parts = [
        rest.slice(i * size, size if i < n_batches - 1 else rest.height - i * size) for i in range(n_batches)
    ]
    batches = [_batch("00-initial", "initial", rows.head(cut))]
    for i, part in enumerate(parts, start=1):
        if i == n_batches:
            batches.append(_batch(f"{i + 1:02d}-shifted", "shifted", shift(part, rows.head(cut))))
        else:
            batches.append(_batch(f"{len(batches):02d}-normal", "normal", part))
        if i == 1:  # the corrupt batch comes right after the first normal one, so a good one follows it
            broken = (
                parts[1].with_columns(pl.col("timestamp") * 1000)
                if "timestamp" in parts[1].columns
                else parts[1].with_columns(pl.format("u{}", "user_id").alias("user_id"))
            )
            batches.append(_batch(f"{len(batches):02d}-corrupt", "corrupt", broken))
    return batches


def shift(batch: pl.DataFrame, before: pl.DataFrame) -> pl.DataFrame:
    """Each event to the item of opposite popularity rank in `before`, at 03:00 UTC of its day."""
    ranked = before.group_by("item_id").len().sort("len", "item_id").get_column("item_id")
    mapping = pl.DataFrame({"item_id": ranked, "shifted_item": ranked.reverse()})
    moved = batch.join(mapping, on="item_id", how="left").with_columns(
        pl.coalesce("shifted_item", "item_id").alias("item_id")
    )
    if "timestamp" in moved.columns:
        night = pl.col("timestamp") - pl.col("timestamp") % 86_400 + 3 * 3_600
        moved = moved.with_columns(night.alias("timestamp"))
    return moved.drop("shifted_item").unique(["user_id", "item_id"], keep="first", maintain_order=True)


def _batch(name: str, kind: str, frame: pl.DataFrame) -> Batch:
    columns = [c.name for c in COLUMNS if c.name in frame.columns]
    buffer = io.BytesIO()
    frame.select(columns).write_csv(buffer)
    return Batch(name=f"{name}.csv", kind=kind, rows=frame.height, data=buffer.getvalue())
