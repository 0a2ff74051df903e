"""Checks of the data settings against the data itself, before any Prefect server or flow starts.

A wrong separator, column, unit or range found by the pipeline costs a server start and a page of tracebacks;
found here it costs reading a file's first rows. Two passes:

1. The first `SAMPLE_ROWS` rows of every input file: readable as the format says, more than one column
   (else the separator is wrong), every `data.columns.*` present, ids that are integers, timestamps that are
   plausible Unix times in `data.timestamp_unit` (the unit that would fit is named), ratings within
   `validation.rating_min`..`rating_max`.
2. Only if that passed, the whole data as the pipeline will read it: the split (`split.*`, after its filters)
   must leave a non-empty train set and test users who have training events, the only ones evaluation can
   rank for. Few such users is a warning, not an error (`Preflight.warnings`).

Every problem is one line naming the setting to change. Pure: settings in, findings out; nothing is written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from .data import schema, sources
from .data.split import SplitRefused, resolved_strategy, split
from .report import few_users_note
from .settings import DataConfig, Settings, SplitConfig

SAMPLE_ROWS = 1_000
_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000}


@dataclass
class Preflight:
    """What the checks found: problems stop the run, warnings are only shown."""

    problems: list[str] = field(default_factory=list)  # each one line naming a setting; any: do not run
    warnings: list[str] = field(default_factory=list)
    rows: int = 0  # events the data holds (0 when the second pass did not run)

    @property
    def ok(self) -> bool:
        """Whether the pipeline may start: no problem found (warnings do not count)."""
        return not self.problems


def check(settings: Settings, split_cfg: SplitConfig | None = None) -> Preflight:
    """Check `settings.data` (and the split it is for: `split_cfg`, default `settings.split`)."""
    found = Preflight()
    data = settings.data
    if data.source in ("synthetic", "snapshot"):
        return found  # generated in contract shape / checked batch by batch when it was ingested
    try:
        files = sources.input_files(data)
    except sources.SourceError as exc:
        found.problems.append(f"data.path: {exc}")
        return found
    for file in files:
        if data.source == "file":
            found.problems += _sample_problems(file, settings)
    if found.problems:
        return found
    try:
        frame = sources.load(data, settings.seed)
    except (sources.SourceError, schema.ContractError) as exc:
        found.problems.append(str(exc))
        return found
    found.rows = frame.height
    found.problems += _range_problems(frame, settings)
    if not found.problems:
        _check_split(frame, split_cfg or settings.split, settings.seed, found)
    return found


def check_file(file: Path, settings: Settings) -> Preflight:
    """Check one batch file against the data settings it will be read with (`ingest --path`)."""
    return Preflight(problems=_sample_problems(file, settings))


def _sample_problems(file: Path, settings: Settings) -> list[str]:
    data = settings.data
    try:
        raw = sources.read_raw(file, data, n_rows=SAMPLE_ROWS)
        mapping = sources.column_mapping(raw, data, file)
    except sources.SourceError as exc:
        return [str(exc)]
    if raw.height == 0:
        return [f"{file}: no rows{' below the header' if data.has_header else ''}"]
    frame = raw.select([pl.col(source).alias(target) for source, target in mapping.items()])
    problems = [
        problem
        for column in ("user_id", "item_id")
        if (problem := _id_problem(frame.get_column(column), column, data, file))
    ]
    if "timestamp" in frame.columns:
        problems += _unit_problem(frame.get_column("timestamp"), data, settings, file)
    return problems


def _id_problem(values: pl.Series, column: str, data: DataConfig, file: Path) -> str | None:
    cast = values.cast(pl.Int64, strict=False)
    bad = values.filter(cast.is_null() & values.is_not_null())
    if bad.is_empty():
        return None
    shown = getattr(data.columns, column)
    return (
        f"{file}: data.columns.{column}={shown!r} holds values that are not integer ids (e.g. "
        f"{bad.head(3).to_list()}); ids must be integers: is it the right column?"
    )


def _unit_problem(values: pl.Series, data: DataConfig, settings: Settings, file: Path) -> list[str]:
    """Timestamps in the unit configured must fall in validation's window; else name the unit that fits."""
    if data.timestamp_unit == "iso":
        try:
            values.str.to_datetime(time_zone="UTC", strict=True)
        except pl.exceptions.PolarsError:
            return [
                f"{file}: data.timestamp_unit=iso, but data.columns.timestamp holds values not in ISO-8601"
            ]
        return []
    numbers = values.cast(pl.Int64, strict=False)
    if numbers.null_count() > values.null_count():
        return [
            f"{file}: data.columns.timestamp={data.columns.timestamp!r} holds values that are not whole "
            "numbers: set data.timestamp_unit=iso for dates, or data.columns.timestamp=null without times"
        ]
    low, high = settings.validation.timestamp_min, int(time.time()) + settings.validation.max_future_seconds
    bounds = _bounds(numbers)
    if bounds is None:
        return []
    first, last = bounds
    divisor = _UNITS[data.timestamp_unit]
    if low <= first // divisor and last // divisor <= high:
        return []
    fits = [unit for unit, d in _UNITS.items() if low <= first // d and last // d <= high]
    advice = (
        f"they look like {dict(s='seconds', ms='milliseconds', us='microseconds')[fits[0]]}: set "
        f"data.timestamp_unit={fits[0]}"
        if fits
        else "no unit makes them dates after validation.timestamp_min: is data.columns.timestamp the time?"
    )
    return [
        f"{file}: timestamps {first}..{last} in data.timestamp_unit={data.timestamp_unit} fall outside "
        f"{low}..{high} (Unix seconds); {advice}"
    ]


def _bounds(values: pl.Series) -> tuple[int, int] | tuple[float, float] | None:
    """The smallest and largest number of a numeric column (ints stay ints), None when it holds none."""
    low, high = values.min(), values.max()
    if isinstance(low, int) and isinstance(high, int):
        return low, high
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        return float(low), float(high)
    return None


def _range_problems(frame: pl.DataFrame, settings: Settings) -> list[str]:
    rules = settings.validation
    if "rating" not in frame.columns or frame.height == 0:
        return []
    bounds = _bounds(frame.get_column("rating"))
    if bounds is None:  # no rating at all, only nulls
        return []
    low, high = bounds
    problems = []
    distinct = frame.get_column("rating").n_unique()
    no_scale = distinct > 100 or high > 100 * max(rules.rating_max, 1)
    if high > rules.rating_max and no_scale:
        # Not a rating scale: more likely another column (an id, a time) named as the rating.
        problems.append(
            f"data.columns.rating={settings.data.columns.rating!r} holds {distinct:,} distinct values up to "
            f"{high:g}: is it the rating column? (data.columns.rating=null for data without ratings)"
        )
    elif high > rules.rating_max:
        problems.append(
            f"ratings go up to {high:g}, above validation.rating_max={rules.rating_max:g}: set "
            f"validation.rating_max={high:g} (or data.columns.rating=null to ignore ratings)"
        )
    if low < rules.rating_min:
        problems.append(
            f"ratings go down to {low:g}, below validation.rating_min={rules.rating_min:g}: set "
            f"validation.rating_min={low:g}"
        )
    return problems


def _check_split(frame: pl.DataFrame, cfg: SplitConfig, seed: int, found: Preflight) -> None:
    has_time = "timestamp" in frame.columns
    try:
        strategy = resolved_strategy(cfg.strategy, has_time)
        parts = split(frame, cfg, seed)
    except (SplitRefused, ValueError) as exc:
        found.problems.append(str(exc))
        return
    trained = parts.train.select("user_id").unique()
    tested = parts.test.select("user_id").unique()
    evaluable = tested.join(trained, on="user_id", how="semi").height
    if parts.train.height == 0:
        found.problems.append(
            f"split.strategy={strategy} leaves no training events ({parts.test.height:,} test): "
            f"{_better_split(cfg, has_time)}"
        )
    elif evaluable == 0:
        found.problems.append(
            f"split.strategy={strategy}: none of the {tested.height:,} test users has a training event, so "
            f"none can be evaluated: {_better_split(cfg, has_time)}"
        )
    else:
        note = few_users_note(evaluable, tested.height, strategy, has_time)
        if note:
            found.warnings.append(note)


def _better_split(cfg: SplitConfig, has_time: bool) -> str:
    if cfg.strategy in ("temporal", "auto") and has_time:
        return "set split.strategy=random or user-random (a time cut-off leaves users on one side only)"
    return "set split.strategy=user-random, or lower split.k_core / split.min_rating"
