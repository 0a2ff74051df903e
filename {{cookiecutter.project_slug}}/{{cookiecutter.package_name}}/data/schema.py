"""The interactions contract: the one frame shape every source produces and every step consumes.

Written once here and read by ingestion, validation and the docs. Ids are integers (raw ids, as the source
wrote them); timestamps are Unix seconds (UTC). Timestamp and rating are optional: a dataset without
timestamps keeps its events in the order they arrived (file order, then batch after batch), and every step
that needs time (a temporal split, time-of-day drift features) says so or does without.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class Column:
    """One column of the contract: its type, whether values may be null, its unit, and what it means."""

    name: str
    dtype: pl.DataType
    nullable: bool
    unit: str
    description: str


COLUMNS: tuple[Column, ...] = (
    Column("user_id", pl.Int64(), False, "id", "Raw user id from the source."),
    Column("item_id", pl.Int64(), False, "id", "Raw item id from the source."),
    Column("timestamp", pl.Int64(), False, "s", "Event time in Unix seconds, UTC (optional)."),
    Column("rating", pl.Float64(), True, "score", "Explicit rating, if the source has one (optional)."),
)
REQUIRED: tuple[str, ...] = ("user_id", "item_id")
OPTIONAL: tuple[str, ...] = ("timestamp", "rating")
ORDER: tuple[str, ...] = ("timestamp", "user_id", "item_id")
DTYPES: dict[str, pl.DataType] = {c.name: c.dtype for c in COLUMNS}


class ContractError(ValueError):
    """A frame does not follow the interactions contract; the message names the column and the rows."""


def conform(frame: pl.DataFrame, origin: str) -> pl.DataFrame:
    """Return `frame` in contract shape: contract columns only, in order, with contract types.

    Casting is strict: a value that does not fit (a non-numeric id, a fractional id) raises a ContractError
    naming `origin`, the column and the first offending rows instead of turning into a silent null.
    """
    missing = [name for name in REQUIRED if name not in frame.columns]
    if missing:
        raise ContractError(f"{origin}: missing required column(s) {missing}; found {frame.columns}")
    names = [name for name in DTYPES if name in frame.columns]
    out = {}
    for name in names:
        out[name] = cast_column(frame.get_column(name), DTYPES[name], origin)
    return pl.DataFrame(out)


def cast_column(series: pl.Series, dtype: pl.DataType, origin: str) -> pl.Series:
    """Cast strictly: a value that does not fit raises a ContractError naming the rows."""
    if series.dtype == dtype:
        return series
    if series.dtype.is_float() and dtype.is_integer():
        # Integer ids read as floats (a NaN or null in the column makes readers do that): keep whole values
        # only, so 12.0 stays 12 but 12.5 is an error rather than a different id.
        fractional = series.is_not_null() & (series.is_nan() | (series != series.floor()))
        if fractional.any():
            _raise_bad_rows(series, fractional, dtype, origin)
        series = series.fill_nan(None)
    cast = series.cast(dtype, strict=False)
    failed = cast.is_null() & series.is_not_null()
    if failed.any():
        _raise_bad_rows(series, failed, dtype, origin)
    return cast


def _raise_bad_rows(series: pl.Series, mask: pl.Series, dtype: pl.DataType, origin: str) -> None:
    rows = mask.arg_true().head(5).to_list()
    values = series.gather(rows).to_list()
    raise ContractError(
        f"{origin}: column '{series.name}' must be {dtype}; {int(mask.sum())} value(s) are not, "
        f"first at row(s) {rows}: {values}"
    )


def ordered(frame: pl.DataFrame) -> pl.DataFrame:
    """The canonical row order: by (timestamp, user, item) when there is time, else as the events arrived
    (sorting by id would lose the only order such data has)."""
    if "timestamp" not in frame.columns:
        return frame
    return frame.sort(ORDER, maintain_order=True)


def event_key(frame: pl.DataFrame) -> list[str]:
    """The columns that identify one event: user, item and, when there is one, its time."""
    return [c for c in ("user_id", "item_id", "timestamp") if c in frame.columns]


def empty() -> pl.DataFrame:
    """An empty frame in contract shape (with the optional rating column)."""
    return pl.DataFrame(schema=DTYPES)


def describe() -> str:
    """The contract as a Markdown table, for reports and the README."""
    lines = ["| column | type | nullable | unit | meaning |", "| --- | --- | --- | --- | --- |"]
    for c in COLUMNS:
        lines.append(
            f"| {c.name} | {c.dtype} | {'yes' if c.nullable else 'no'} | {c.unit} | {c.description} |"
        )
    return "\n".join(lines)
