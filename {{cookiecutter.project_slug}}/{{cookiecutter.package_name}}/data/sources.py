"""Readers that turn every supported source into one frame under the interactions contract.

- synthetic: the seeded generator in `synthetic.py` (the default; nothing to download).
- movielens: a MovieLens directory, format detected from the files present: ml-100k `u.data`,
  ml-1m/10m `ratings.dat`, ml-latest(-small)/ml-25m `ratings.csv`.
- file: a file of any name (or a directory of data files) read as Parquet or as delimited text (`data.format`;
  by default `.parquet`/`.pq` are Parquet and anything else, `.csv .dat .tsv .txt`, is text), with or without
  a header (`data.has_header`; without one, `data.columns.*` are 0-based positions), a separator of one or
  more characters (`data.csv_separator`: `,`, `\\t`, `::`), a column map in which timestamp and rating may be
  null, and a timestamp unit.

Every error names the file and, where it can, the column and rows. Readers never modify what they read.
An error never quotes a file that does not look like interactions: the header is quoted only once it names a
contract column, and a parser's message loses what it quotes from the bytes (a misplaced secrets file
must not end up in a log or a quarantine reason).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from pathlib import Path
from typing import Any

import polars as pl

from ..settings import DataConfig
from . import schema, synthetic

log = logging.getLogger(__name__)


class SourceError(ValueError):
    """A source cannot be read into the contract; the message says which file and why."""


MOVIELENS_FILES = ("u.data", "ratings.dat", "ratings.csv")
_POSITIONS = {"user_id": 0, "item_id": 1, "rating": 2, "timestamp": 3}
# The files a directory given as `data.path` contributes (a single file given by name may have any suffix).
DIRECTORY_SUFFIXES = (".csv", ".tsv", ".dat", ".parquet", ".pq")
# Stands in for a separator of several characters, which polars' reader cannot split on.
_UNIT_SEPARATOR = "\x1f"


def load(cfg: DataConfig, seed: int) -> pl.DataFrame:
    """The interactions named by `cfg`, in contract shape and sorted by (timestamp, user_id, item_id)."""
    if cfg.source == "synthetic":
        frame = synthetic.generate(cfg.synthetic, seed)
    elif cfg.source == "movielens":
        frame = read_movielens(_existing(cfg.path))
    else:
        _not_snapshot(cfg)
        frame = read_files(_existing(cfg.path), cfg)
    # One canonical row order, so the same events always give the same snapshot bytes and id.
    return schema.ordered(frame)


def input_files(cfg: DataConfig) -> list[Path]:
    """The files `load` reads for this config (none for synthetic data)."""
    if cfg.source == "synthetic":
        return []
    _not_snapshot(cfg)
    path = _existing(cfg.path)
    return [_movielens_file(path)] if cfg.source == "movielens" else _data_files(path)


def fingerprint_inputs(cfg: DataConfig) -> list[dict[str, str | int]]:
    """Name, size and sha256 of every input file: the raw bytes a snapshot comes from."""
    return [
        {"path": str(file), "size": file.stat().st_size, "sha256": _sha256(file)} for file in input_files(cfg)
    ]


def _sha256(file: Path) -> str:
    with file.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# How each MovieLens ratings file is laid out, as data settings: `ingest --source movielens` lands the file as
# a batch read with these, and `read_movielens` reads it with them.
MOVIELENS_LAYOUTS: dict[str, dict[str, Any]] = {
    "u.data": {"csv_separator": "\t", "has_header": False, "columns": _POSITIONS},
    "ratings.dat": {"csv_separator": "::", "has_header": False, "columns": _POSITIONS},
    "ratings.csv": {
        "csv_separator": ",",
        "has_header": True,
        "columns": {"user_id": "userId", "item_id": "movieId", "timestamp": "timestamp", "rating": "rating"},
    },
}


def movielens_layout(path: Path) -> tuple[Path, dict[str, Any]]:
    """The ratings file of a MovieLens directory (or file) and the data settings that read it as a file."""
    file = _movielens_file(path)
    layout = {"format": "csv", "timestamp_unit": "s", **MOVIELENS_LAYOUTS[file.name]}
    return file, layout


def read_movielens(path: Path) -> pl.DataFrame:
    """A MovieLens directory (or its ratings file) under the contract, whichever release it is."""
    file, layout = movielens_layout(path)
    return _read_one(file, DataConfig(source="file", path=file, **layout))


def read_files(path: Path, cfg: DataConfig) -> pl.DataFrame:
    """Every data file of `path`; a file byte-identical to one already read is a copy and is read once."""
    frames: list[pl.DataFrame] = []
    seen: dict[str, Path] = {}
    for file in _data_files(path):
        digest = _sha256(file)
        if digest in seen:
            log.warning("%s: the same bytes as %s, read once", file, seen[digest].name)
            continue
        seen[digest] = file
        frames.append(_read_one(file, cfg))
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]


def read_file(
    file: Path, cfg: DataConfig, strict_columns: bool = False, data: bytes | None = None
) -> pl.DataFrame:
    """One data file in contract shape.

    With `strict_columns`, a column that `data.columns` does not name is an error: a batch's extra column
    would otherwise be dropped without anyone noticing. With `data`, those bytes are parsed instead of the
    file's current content (the name still gives the format and names the errors).
    """
    return _read_one(file, cfg, strict_columns, data)


def read_raw(
    file: Path, cfg: DataConfig, data: bytes | None = None, n_rows: int | None = None
) -> pl.DataFrame:
    """A file's columns as written (text for delimited text); only its first `n_rows` rows if given."""
    try:
        if cfg.is_parquet(file):
            raw = pl.read_parquet(io.BytesIO(data) if data is not None else file, n_rows=n_rows)
            if not cfg.has_header:  # Parquet always names its columns: positions index them
                raw = raw.rename({c: f"column_{i + 1}" for i, c in enumerate(raw.columns)})
            return raw
        return _read_text(file, cfg.csv_separator, cfg.has_header, data, n_rows)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        kind = "Parquet" if cfg.is_parquet(file) else "delimited text (data.format)"
        raise SourceError(f"{file}: cannot be read as {kind}: {_unquoted(exc)}") from exc


def _read_text(
    file: Path, separator: str, has_header: bool, data: bytes | None, n_rows: int | None
) -> pl.DataFrame:
    # Every column as text: the contract casts strictly and names the rows that do not fit.
    if len(separator.encode()) == 1:
        source = io.BytesIO(data) if data is not None else file
        return pl.read_csv(
            source, separator=separator, has_header=has_header, infer_schema=False, n_rows=n_rows
        )
    raw = data if data is not None else file.read_bytes()
    if _UNIT_SEPARATOR.encode() in raw:
        raise SourceError(f"{file}: holds the byte 0x1f, which reading a separator of several bytes needs")
    # Such files (MovieLens' `::`) do not quote fields, so quotes are text.
    replaced = raw.replace(separator.encode(), _UNIT_SEPARATOR.encode())
    return pl.read_csv(
        io.BytesIO(replaced),
        separator=_UNIT_SEPARATOR,
        quote_char=None,
        has_header=has_header,
        infer_schema=False,
        n_rows=n_rows,
    )


def column_mapping(raw: pl.DataFrame, cfg: DataConfig, file: Path) -> dict[str, str]:
    """file column -> contract column, for the columns `data.columns` names (null ones are absent).

    Every error names the setting to change and what the file holds instead.
    """
    if cfg.has_header and raw.width > 1 and all(_is_number(name) for name in raw.columns):
        raise SourceError(
            f"{file}: its first line is {raw.width} numbers, not names: a file without a header needs "
            "data.has_header=false (and data.columns.* as positions)"
        )
    mapping: dict[str, str] = {}
    for target, wanted in cfg.columns.model_dump().items():
        if wanted is None:
            continue
        if isinstance(wanted, int):
            if wanted >= raw.width:
                raise SourceError(
                    f"{file}: data.columns.{target}={wanted} but the file has {raw.width} column(s) "
                    f"(positions 0-{raw.width - 1}){_separator_hint(raw, cfg)}"
                )
            source = raw.columns[wanted]
        elif wanted in raw.columns:
            source = wanted
        elif target == "rating" and wanted == "rating":
            continue  # the default name of an optional column: data without ratings needs no setting
        else:
            raise SourceError(f"{file}: data.columns.{target}={wanted!r} is not a column; {_found(raw, cfg)}")
        if source in mapping:
            raise SourceError(
                f"{file}: data.columns.{target} and data.columns.{mapping[source]} name the same column "
                f"({wanted!r}): each contract column needs its own"
            )
        mapping[source] = target
    return mapping


def _is_number(text: str) -> bool:
    return text.strip().lstrip("-").replace(".", "", 1).isdigit()


def _found(raw: pl.DataFrame, cfg: DataConfig) -> str:
    """What the file holds instead, its header quoted only once it names a column we know: a misplaced file
    (a secrets file) must not end up in a log or a quarantine reason."""
    names = raw.columns
    known = _named(cfg) | {*schema.DTYPES, "userId", "itemId", "movieId"}
    if raw.width == 1:
        return f"the file has a single column{_separator_hint(raw, cfg)}"
    if known & set(names):
        return f"its columns are {names}"
    return f"it has {raw.width} column(s), none of them named like interactions"


def _separator_hint(raw: pl.DataFrame, cfg: DataConfig) -> str:
    """For a file read as one column: which separator its first line seems to use."""
    if raw.width > 1:
        return ""
    line = raw.columns[0] if cfg.has_header or raw.height == 0 else str(raw.item(0, 0))
    for candidate in ("::", "\t", ";", ",", "|", " "):
        parts = line.split(candidate)
        if candidate != cfg.csv_separator and len(parts) > 1:
            shown = "\\t" if candidate == "\t" else candidate
            named = set(parts) & ({*schema.DTYPES, "userId", "itemId", "movieId"} | _named(cfg))
            listed = f" {parts}" if named else ""
            return f": its first line{listed} looks separated by '{shown}' (set data.csv_separator='{shown}')"
    shown = "\\t" if cfg.csv_separator == "\t" else cfg.csv_separator
    return f" (is data.csv_separator '{shown}' right?)"


def _named(cfg: DataConfig) -> set[str]:
    return {v for v in cfg.columns.model_dump().values() if isinstance(v, str)}


def _read_one(
    file: Path, cfg: DataConfig, strict_columns: bool = False, data: bytes | None = None
) -> pl.DataFrame:
    raw = read_raw(file, cfg, data)
    if raw.height == 0:
        raise SourceError(f"{file}: no rows")
    mapping = column_mapping(raw, cfg, file)
    extra = [c for c in raw.columns if c not in mapping]
    if strict_columns and extra:
        named = extra if cfg.has_header else [raw.columns.index(c) for c in extra]
        raise SourceError(
            f"{file}: unexpected column(s) {named}; data.columns names {list(mapping.values())}"
        )
    frame = raw.select([pl.col(source).alias(target) for source, target in mapping.items()])
    if "timestamp" in frame.columns:
        seconds = _timestamp_seconds(frame.get_column("timestamp"), cfg.timestamp_unit, file)
        frame = frame.with_columns(seconds)
    return schema.conform(frame, str(file))


def _unquoted(exc: BaseException) -> str:
    """A reader's message without the text it quotes from the file (polars quotes the line it choked on)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"`[^`]*`?|'[^']*'", "<not quoted>", first)


def _timestamp_seconds(column: pl.Series, unit: str, file: Path) -> pl.Series:
    if unit == "iso":
        try:
            parsed = column.cast(pl.String).str.to_datetime(time_zone="UTC", strict=True)
        except pl.exceptions.PolarsError as exc:
            raise SourceError(f"{file}: column 'timestamp' is not ISO-8601: {exc}") from exc
        return parsed.dt.epoch("s").alias("timestamp")
    divisor = {"s": 1, "ms": 1_000, "us": 1_000_000}[unit]
    return (schema.cast_column(column, pl.Int64(), str(file)) // divisor).alias("timestamp")


def _not_snapshot(cfg: DataConfig) -> None:
    if cfg.source == "snapshot":
        raise SourceError(
            "the current snapshot lives in the artifact store: the pipeline reads it, not a source"
        )


def _existing(path: Path | None) -> Path:
    if path is None or not Path(path).exists():
        raise SourceError(f"data path does not exist: {path}")
    return Path(path)


def _movielens_file(path: Path) -> Path:
    if path.is_file():
        if path.name in MOVIELENS_FILES:
            return path
        raise SourceError(
            f"{path}: not a MovieLens ratings file (expected one of {', '.join(MOVIELENS_FILES)})"
        )
    for name in MOVIELENS_FILES:
        if (path / name).is_file():
            return path / name
    raise SourceError(f"{path}: no MovieLens ratings file found (looked for {', '.join(MOVIELENS_FILES)})")


def _data_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(
        p for p in path.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in DIRECTORY_SUFFIXES
    )  # fmt: skip
    if not files:
        raise SourceError(f"{path}: no {' '.join(DIRECTORY_SUFFIXES)} files in this directory")
    return files
