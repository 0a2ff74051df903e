"""Readers that turn every supported source into one frame under the interactions contract.

- synthetic: the seeded generator in `synthetic.py` (the default; nothing to download).
- movielens: a MovieLens directory, format detected from the files present: ml-100k `u.data`,
  ml-1m/10m `ratings.dat`, ml-latest(-small)/ml-25m `ratings.csv`.
- file: a CSV or Parquet file (or a directory of them) with a column map and a timestamp unit from config.

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

import polars as pl

from ..settings import DataConfig
from . import schema, synthetic

log = logging.getLogger(__name__)


class SourceError(ValueError):
    """A source cannot be read into the contract; the message says which file and why."""


MOVIELENS_FILES = ("u.data", "ratings.dat", "ratings.csv")
FILE_SUFFIXES = (".csv", ".parquet", ".pq")


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
    return frame.sort("timestamp", "user_id", "item_id", maintain_order=True)


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


def read_movielens(path: Path) -> pl.DataFrame:
    file = _movielens_file(path)
    try:
        if file.name == "u.data":
            raw = pl.read_csv(file, separator="\t", has_header=False, infer_schema=False)
            raw = _positional(raw, file, 4)
        elif file.name == "ratings.dat":
            # `::`-separated; splitting on ':' yields empty columns between the fields.
            raw = pl.read_csv(file, separator=":", has_header=False, infer_schema=False)
            raw = _positional(raw.select(raw.columns[::2]), file, 4)
        else:
            raw = pl.read_csv(file, infer_schema=False).rename(
                {"userId": "user_id", "movieId": "item_id"}, strict=False
            )
    except pl.exceptions.PolarsError as exc:
        raise SourceError(f"{file}: cannot be read as MovieLens {file.name}: {exc}") from exc
    return schema.conform(raw, str(file))


def read_files(path: Path, cfg: DataConfig) -> pl.DataFrame:
    """Every data file of `path`; a file byte-identical to one already read is a copy and is read once."""
    frames, seen = [], {}
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
    """One CSV/Parquet file in contract shape.

    With `strict_columns`, a column that `data.columns` does not name is an error: a batch's extra column
    would otherwise be dropped without anyone noticing. With `data`, those bytes are parsed instead of the
    file's current content (the name still gives the format and names the errors).
    """
    if file.suffix.lower() not in FILE_SUFFIXES:
        raise SourceError(f"{file}: unsupported file type; use one of {', '.join(FILE_SUFFIXES)}")
    return _read_one(file, cfg, strict_columns, data)


def _read_one(
    file: Path, cfg: DataConfig, strict_columns: bool = False, data: bytes | None = None
) -> pl.DataFrame:
    source = io.BytesIO(data) if data is not None else file
    try:
        if file.suffix.lower() == ".csv":
            # Read everything as text; the contract casts strictly and names the rows that do not fit.
            raw = pl.read_csv(source, separator=cfg.csv_separator, infer_schema=False)
        else:
            raw = pl.read_parquet(source)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{file}: cannot be read: {_unquoted(exc)}") from exc
    if raw.height == 0:
        raise SourceError(f"{file}: no rows")

    mapping = {
        source: target
        for target, source in cfg.columns.model_dump().items()
        if source is not None and (target in schema.REQUIRED or source in raw.columns)
    }
    missing = [source for source in mapping if source not in raw.columns]
    if missing:
        # A header naming none of the columns may be no header at all (a config file's first line).
        found = raw.columns if len(missing) < len(mapping) else f"{raw.width} column(s), none of them named"
        raise SourceError(
            f"{file}: column(s) {missing} named in data.columns are missing; the file has {found} "
            f"(is data.csv_separator '{cfg.csv_separator}' right?)"
        )
    extra = [c for c in raw.columns if c not in mapping]
    if strict_columns and extra:
        raise SourceError(
            f"{file}: unexpected column(s) {extra}; expected {list(mapping)} (see data.columns)"
        )
    frame = raw.select([pl.col(source).alias(target) for source, target in mapping.items()])
    frame = frame.with_columns(_timestamp_seconds(frame.get_column("timestamp"), cfg.timestamp_unit, file))
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


def _positional(raw: pl.DataFrame, file: Path, width: int) -> pl.DataFrame:
    if raw.width != width:
        raise SourceError(
            f"{file}: expected {width} fields per line (user, item, rating, timestamp), got {raw.width}"
        )
    return raw.rename(dict(zip(raw.columns, ("user_id", "item_id", "rating", "timestamp"), strict=True)))


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
        files = [path]
    else:
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FILE_SUFFIXES)
        if not files:
            raise SourceError(f"{path}: no {'/'.join(FILE_SUFFIXES)} files in this directory")
    bad = [f for f in files if f.suffix.lower() not in FILE_SUFFIXES]
    if bad:
        raise SourceError(f"{bad[0]}: unsupported file type; use one of {', '.join(FILE_SUFFIXES)}")
    return files
