"""Where the data comes from and how it is read, checked, landed and split (`data`, `validation`, `ingest`,
`split`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import DataSource, _Section


class SyntheticConfig(_Section):
    """`data.synthetic`: size and shape of the generated data (the default source, `data/synthetic.py`)."""

    n_users: int = Field(2_000, gt=0)
    n_items: int = Field(1_000, gt=0)
    n_interactions: int = Field(100_000, gt=0, description="Events drawn before (user, item) de-duplication.")
    n_topics: int = Field(20, gt=0, description="Latent tastes shared by users and items.")
    popularity_exponent: float = Field(1.0, ge=0, description="Zipf exponent of item popularity.")
    activity_sigma: float = Field(1.0, ge=0, description="Log-normal spread of user activity.")
    topic_affinity: float = Field(0.8, ge=0, le=1, description="Share of events drawn from a user's tastes.")
    start: int = Field(1_700_000_000, description="First event time, Unix seconds.")
    days: int = Field(180, gt=0)
    with_rating: bool = True


Column = str | int  # a header name, or a 0-based position (the only way to name a column without a header)


class ColumnMap(_Section):
    """Which column of a file holds each contract column: a header name or a 0-based position.

    `timestamp` and `rating` may be null for data without them: without timestamps the snapshot keeps the
    order events arrived in, the default split is random and monitoring windows follow arrival order.
    """

    user_id: Column = "user_id"
    item_id: Column = "item_id"
    timestamp: Column | None = "timestamp"
    rating: Column | None = "rating"


class ItemsConfig(_Section):
    """An optional catalogue file (item id and title) that `recommend` shows titles from. MovieLens
    directories bring theirs (u.item, movies.dat, movies.csv); other sources name one here."""

    path: Path | None = Field(None, description="CSV/Parquet file with an item id and a title column.")
    id: Column = "item_id"
    title: Column = "title"
    csv_separator: str = ","
    has_header: bool = True

    @field_validator("csv_separator")
    @classmethod
    def _unescaped(cls, value: str) -> str:
        return _separator("data.items.csv_separator", value)


# What a file's name says about its format when `data.format` is auto (anything else is read as CSV text).
PARQUET_SUFFIXES = (".parquet", ".pq")
_SEPARATOR_ESCAPES = {"\\t": "\t", "tab": "\t", "\\s": " ", "space": " "}


def _separator(field: str, value: str) -> str:
    """A separator as written in a config file or after --set: `\\t` (or `tab`) is a tab."""
    value = _SEPARATOR_ESCAPES.get(value, value)
    if not value or any(c in value for c in '\r\n"') or value.isalnum():
        raise ValueError(
            f"{field}: {value!r} cannot separate columns; use a character such as ',', ';', '|', '::' or \\t"
        )
    return value


class DataConfig(_Section):
    """`data`: which source to read, where, and how its columns, separator and timestamps are to be read."""

    source: DataSource = Field(
        "synthetic", description="`snapshot`: the current snapshot built by `ingest` from landed batches."
    )
    path: Path | None = Field(None, description="MovieLens directory, or a data file or directory of them.")
    # Registered models, their champion and history are kept per dataset: a model is only ever judged
    # against, and only ever replaces, a champion trained on the same dataset.
    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="The dataset's name in the registry; null: `synthetic`, `snapshot` or the path's stem.",
    )
    synthetic: SyntheticConfig = SyntheticConfig()
    format: Literal["auto", "csv", "parquet"] = Field(
        "auto", description="auto: .parquet/.pq files are Parquet, any other is text (.csv .dat .tsv .txt)."
    )
    has_header: bool = Field(True, description="false: data.columns.* are 0-based column positions.")
    columns: ColumnMap = ColumnMap()
    csv_separator: str = Field(",", description="One or more characters (e.g. '::'); \\t for a tab.")
    timestamp_unit: Literal["s", "ms", "us", "iso"] = Field(
        "s", description="How timestamps are written in files."
    )
    items: ItemsConfig = ItemsConfig()

    @field_validator("csv_separator")
    @classmethod
    def _unescaped(cls, value: str) -> str:
        return _separator("data.csv_separator", value)

    @model_validator(mode="after")
    def _checked(self) -> DataConfig:
        if self.source in ("movielens", "file") and self.path is None:
            raise ValueError(f"data.path is required when data.source is '{self.source}'")
        if not self.has_header:
            # An environment variable gives the position as text.
            columns = self.columns.model_dump()
            digits = {k: int(v) for k, v in columns.items() if isinstance(v, str) and v.isdigit()}
            if digits:
                object.__setattr__(self, "columns", ColumnMap(**{**columns, **digits}))
        if not self.has_header and self.source in ("file", "snapshot"):  # files, or batches into a snapshot
            named = [k for k, v in self.columns.model_dump().items() if isinstance(v, str)]
            if named:
                raise ValueError(
                    f"data.has_header is false, so data.columns.{named[0]} must be a 0-based column "
                    f"position (e.g. --set data.columns.{named[0]}=0), not the name "
                    f"{getattr(self.columns, named[0])!r}"
                )
        return self

    def dataset_name(self) -> str:
        """The dataset's registry name: `data.name`, else `synthetic`, `snapshot`, or the path's stem
        (`ml-100k` for a MovieLens directory, `ratings` for ratings.dat)."""
        if self.name:
            return self.name
        if self.source in ("synthetic", "snapshot") or self.path is None:
            return self.source
        path = Path(self.path)
        stem = path.name if path.is_dir() or not path.suffix else path.stem
        cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:64]
        return cleaned or "data"

    def is_parquet(self, file: Path) -> bool:
        """Whether `file` is read as Parquet (else as CSV text)."""
        if self.format != "auto":
            return self.format == "parquet"
        return file.suffix.lower() in PARQUET_SUFFIXES


class ValidationConfig(_Section):
    """`validation`: the plausible range of every event's values, and the limits a new batch must keep."""

    rating_min: float = 0.0
    rating_max: float = 5.0
    timestamp_min: int = Field(
        631_152_000, description="Earliest plausible event, Unix seconds (1990-01-01)."
    )
    max_future_seconds: int = Field(86_400, ge=0, description="Tolerated clock skew into the future.")
    # Checks on a new batch (landing zone), against the current snapshot:
    min_batch_rows: int = Field(1, ge=1)
    max_batch_rows: int = Field(5_000_000, ge=1)
    max_new_user_share: float = Field(
        1.0, ge=0, le=1, description="Share of a batch's rows from unseen users."
    )
    max_new_item_share: float = Field(0.5, ge=0, le=1, description="Share of a batch's rows on unseen items.")
    min_user_interactions: int = Field(1, ge=1, description="Per user, in the snapshot the batch would make.")
    min_item_interactions: int = Field(1, ge=1, description="Per item, in the snapshot the batch would make.")
    min_share_at_minimum: float = Field(
        0.0, ge=0, le=1, description="Share of a batch's rows whose user and item reach those minimums."
    )


class IngestConfig(_Section):
    """Where new batch files arrive, when one counts as arrived, and where refused ones are kept."""

    landing: Path = Path("landing")
    quarantine: Path = Path("quarantine")
    settle_seconds: float = Field(
        5.0, ge=0, description="A landed file is ready once its size and mtime held still this long."
    )
    lock_ttl_seconds: float = Field(
        60.0, gt=0, description="The ingest lock of a holder on another host that stopped refreshing expires."
    )
    lock_wait_seconds: float = Field(600.0, ge=0, description="How long an ingest waits for the lock.")


class SplitConfig(_Section):
    """`split`: the protocol that cuts train from test, and the filters applied before it."""

    strategy: Literal["auto", "temporal", "random", "leave-last-out", "user-random"] = Field(
        "auto",
        description="auto: temporal with timestamps, else random; temporal: global time cut-off; random: "
        "global holdout; leave-last-out: each user's last event; user-random: test_fraction of each user's "
        "events.",
    )
    test_fraction: float = Field(0.2, gt=0, lt=1)
    k_core: int = Field(
        0, ge=0, description="Before splitting, keep users and items with >= k events (0: off)."
    )
    min_rating: float | None = Field(None, description="Before splitting, keep events rated at least this.")
