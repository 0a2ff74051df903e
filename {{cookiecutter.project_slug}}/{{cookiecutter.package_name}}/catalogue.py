"""Item titles, so `recommend` shows what it recommends: the dataset's catalogue of item ids and titles.

Where it comes from: the file `data.items` names (any source), else, for source `movielens`, the item file
MovieLens ships beside its ratings: `u.item` (100K; `|`-separated, latin-1: id|title|date|...),
`movies.dat` (1M, 10M; `::`-separated: id::title::genres) or `movies.csv` (latest; a header
movieId,title,genres). A dataset without one has no titles, and recommendations show ids only.
"""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from .settings import PARQUET_SUFFIXES, DataConfig, ItemsConfig

MOVIELENS_CATALOGUES = ("u.item", "movies.dat", "movies.csv")
_UNIT_SEPARATOR = "\x1f"  # stands in for a separator of several characters, which polars cannot split on
_SCHEMA = {"item_id": pl.Int64, "title": pl.String}


class CatalogueError(ValueError):
    """The configured catalogue cannot be read; the message names the setting to fix."""


def item_titles(data: DataConfig) -> pl.DataFrame | None:
    """item_id (Int64) and title (String), one row per item, or None when the dataset has no catalogue."""
    if data.items.path is not None:
        return read_items(data.items)
    if data.source == "movielens" and data.path is not None:
        found = movielens_catalogue(Path(data.path))
        return None if found is None else read_movielens_items(found)
    return None


def with_titles(frame: pl.DataFrame, titles: pl.DataFrame | None) -> pl.DataFrame:
    """`frame` (with an item_id column) plus a title column when there is a catalogue; rows keep their
    order, an item the catalogue lacks has a null title."""
    if titles is None:
        return frame
    return frame.join(titles, on="item_id", how="left", maintain_order="left")


def movielens_catalogue(path: Path) -> Path | None:
    """The item file beside MovieLens ratings (`path`: their directory or the ratings file), if any."""
    directory = path if path.is_dir() else path.parent
    return next((directory / n for n in MOVIELENS_CATALOGUES if (directory / n).is_file()), None)


def read_movielens_items(file: Path) -> pl.DataFrame:
    """A MovieLens item file as item_id, title."""
    if file.name == "movies.csv":
        return _conformed(pl.read_csv(file, columns=["movieId", "title"], infer_schema=False), file.name)
    separator = "|" if file.name == "u.item" else "::"
    # Titles hold quotes and commas but never the separator: split each line at its first two separators.
    rows = [line.split(separator, 2)[:2] for line in _text(file).splitlines() if line.strip()]
    frame = pl.DataFrame(rows, schema=["item_id", "title"], orient="row")
    return _conformed(frame, file.name)


def read_items(cfg: ItemsConfig) -> pl.DataFrame:
    """The catalogue file `data.items` names, as item_id, title (its id and title columns: header names, or
    0-based positions)."""
    path = Path(cfg.path) if cfg.path is not None else None
    if path is None or not path.is_file():
        raise CatalogueError(f"data.items.path: {path} is not a file")
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            raw = pl.read_parquet(path)
        else:
            raw = _read_text(_text(path), cfg.csv_separator, cfg.has_header)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise CatalogueError(f"data.items.path: {path} cannot be read: {exc}") from exc
    picked = {name: _column(raw, getattr(cfg, name), f"data.items.{name}") for name in ("id", "title")}
    frame = raw.select(pl.col(picked["id"]).alias("item_id"), pl.col(picked["title"]).alias("title"))
    return _conformed(frame, f"data.items.path ({path.name})")


def _read_text(text: str, separator: str, has_header: bool) -> pl.DataFrame:
    quote_char: str | None = '"'
    if len(separator.encode()) > 1:  # polars splits on one byte: a longer separator becomes one, unquoted
        text, separator, quote_char = text.replace(separator, _UNIT_SEPARATOR), _UNIT_SEPARATOR, None
    return pl.read_csv(
        io.BytesIO(text.encode()),
        separator=separator,
        quote_char=quote_char,
        has_header=has_header,
        infer_schema=False,
    )


def _column(raw: pl.DataFrame, wanted: str | int, setting: str) -> str:
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        if 0 <= wanted < raw.width:
            return raw.columns[wanted]
        raise CatalogueError(f"{setting}: position {wanted}, but the file has {raw.width} columns")
    if wanted in raw.columns:
        return str(wanted)
    raise CatalogueError(f"{setting}: no column {wanted!r}; the file has {', '.join(raw.columns[:12])}")


def _conformed(frame: pl.DataFrame, where: str) -> pl.DataFrame:
    """item_id as Int64 and title as text, the first title of an id repeated."""
    frame = frame.rename(dict(zip(frame.columns, _SCHEMA, strict=True)))
    ids = frame.get_column("item_id").cast(pl.String).str.strip_chars()
    cast = ids.cast(pl.Int64, strict=False)
    bad = ids.filter(cast.is_null() & ids.is_not_null())
    if bad.len():
        setting = "data.items.id" if where.startswith("data.items") else where
        raise CatalogueError(f"{setting}: {bad[0]!r} is not an integer item id ({where})")
    titles = frame.get_column("title").cast(pl.String).str.strip_chars()
    return (
        pl.DataFrame({"item_id": cast, "title": titles}, schema=_SCHEMA)
        .drop_nulls("item_id")
        .unique("item_id", keep="first", maintain_order=True)
    )


def _text(file: Path) -> str:
    """A text file's content: UTF-8, else latin-1 (MovieLens 100K and 1M are latin-1)."""
    data = file.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")
