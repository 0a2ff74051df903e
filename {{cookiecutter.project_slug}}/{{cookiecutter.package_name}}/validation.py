"""Great Expectations suites on the interactions contract, reduced to a small result object.

Two suites, both built from the contract (`data/schema.py`) and the thresholds in `ValidationConfig`:
- `validate`: a snapshot before training (rows, non-null ids and times, time bounds, ratings present and in
  range, one row per event);
- `validate_batch`: a new batch before it joins the current snapshot: the same, plus batch size bounds, a
  rating column when the snapshot has ratings, the share of unseen users and items, and how many rows reach
  the per-user/per-item minimums in the snapshot the batch would make.
The flow branches on `ValidationResult.passed`; `failures()` and `markdown()` say what failed, with rows.
GX runs in an ephemeral context; Data Docs HTML is written only when a folder is given.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from .data import schema
from .settings import ValidationConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """One expectation's result; `rows` and `unexpected_sample` are a few offenders, not all of them."""

    expectation: str
    column: str | None
    passed: bool
    unexpected_count: int
    unexpected_sample: tuple[Any, ...]
    observed: Any = None
    rows: tuple[int, ...] = ()  # positions of a few offending rows


@dataclass(frozen=True)
class ValidationResult:
    """A suite's verdict on a frame: `passed` when every expectation held, and each check."""

    passed: bool
    rows: int
    checks: tuple[Check, ...]

    def failures(self) -> tuple[Check, ...]:
        """The checks that failed, in suite order."""
        return tuple(c for c in self.checks if not c.passed)

    def reasons(self) -> list[str]:
        """One line per failed check, with what was observed and a sample of offending values."""
        out = []
        for c in self.failures():
            what = f"observed {c.observed}" if c.observed is not None else f"{c.unexpected_count} unexpected"
            sample = f", e.g. {list(c.unexpected_sample)}" if c.unexpected_sample else ""
            out.append(f"{c.expectation}({c.column or 'table'}): {what}{sample}")
        return out

    def summary(self) -> str:
        """One line for logs and run summaries: all passed, or how many failed and why."""
        if self.passed:
            return f"all {len(self.checks)} expectations passed on {self.rows} rows"
        reasons = self.reasons()
        return f"{len(reasons)} of {len(self.checks)} expectations failed on {self.rows} rows: " + "; ".join(
            reasons
        )

    def markdown(self, frame: pl.DataFrame | None = None) -> str:
        """Failed expectations as Markdown, with a few offending rows of `frame` where positions are known."""
        lines = [f"**{'passed' if self.passed else 'FAILED'}**: {self.summary()}", ""]
        for c in self.failures():
            lines.append(f"- `{c.expectation}` on `{c.column or 'table'}`")
            if frame is not None and c.rows:
                rows = frame.select(schema_columns(frame))[list(c.rows)]
                lines += ["", "  | " + " | ".join(rows.columns) + " |", "  |" + " --- |" * rows.width]
                lines += ["  | " + " | ".join(str(v) for v in row) + " |" for row in rows.iter_rows()]
                lines.append("")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the stored validation result)."""
        return asdict(self)


def schema_columns(frame: pl.DataFrame) -> list[str]:
    """The contract's columns present in `frame`, in contract order (extra columns left out)."""
    return [c.name for c in schema.COLUMNS if c.name in frame.columns]


def validate(
    frame: pl.DataFrame, cfg: ValidationConfig, now: int, docs_dir: Path | None = None
) -> ValidationResult:
    """Run the snapshot suite on `frame`; `now` (Unix seconds) bounds how far ahead events may be."""
    return _run(frame, _base(frame, cfg, now, min_rows=1, max_rows=None), docs_dir)


def validate_batch(
    batch: pl.DataFrame,
    current: pl.DataFrame | None,
    cfg: ValidationConfig,
    now: int,
    docs_dir: Path | None = None,
) -> ValidationResult:
    """Run the batch suite on `batch`, judged against the `current` snapshot (None before the first batch)."""
    import great_expectations.expectations as gxe

    expectations = _base(batch, cfg, now, min_rows=cfg.min_batch_rows, max_rows=cfg.max_batch_rows)
    for optional in schema.OPTIONAL:
        if current is not None and optional in current.columns:
            # Without it the batch's events would join the snapshot with nulls in that column.
            expectations.append(gxe.ExpectColumnToExist(column=optional))
    frame = _with_context(batch, current, cfg)
    if current is not None and current.height:
        expectations.append(
            gxe.ExpectColumnMeanToBeBetween(column="new_user", max_value=cfg.max_new_user_share)
        )
        expectations.append(
            gxe.ExpectColumnMeanToBeBetween(column="new_item", max_value=cfg.max_new_item_share)
        )
    expectations.append(
        gxe.ExpectColumnMeanToBeBetween(column="reaches_minimums", min_value=cfg.min_share_at_minimum)
    )
    return _run(frame, expectations, docs_dir, rows=batch.height)


def _base(
    frame: pl.DataFrame, cfg: ValidationConfig, now: int, min_rows: int, max_rows: int | None
) -> list[Any]:
    import great_expectations.expectations as gxe

    # Without timestamps an event is a (user, item) pair: the same pair twice is one event counted twice.
    present = [name for name in schema.REQUIRED + ("timestamp",) if name in frame.columns]
    expectations: list[Any] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=min_rows, max_value=max_rows),
        *(gxe.ExpectColumnToExist(column=name) for name in schema.REQUIRED),
        *(gxe.ExpectColumnValuesToNotBeNull(column=name) for name in present),
        # Ingest refuses a batch that repeats an event; a snapshot read from files must not count one twice.
        gxe.ExpectCompoundColumnsToBeUnique(column_list=schema.event_key(frame)),
    ]
    if "timestamp" in frame.columns:
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="timestamp", min_value=cfg.timestamp_min, max_value=now + cfg.max_future_seconds
            )
        )
    if "rating" in frame.columns:
        # `between` skips missing values, and GX on pandas sees a NaN as missing: both fail here instead.
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column="rating"))
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="rating", min_value=cfg.rating_min, max_value=cfg.rating_max
            )
        )
    return expectations


def _with_context(batch: pl.DataFrame, current: pl.DataFrame | None, cfg: ValidationConfig) -> pl.DataFrame:
    """The batch plus per-row facts about the snapshot it would join (0/1 columns, so GX can average them)."""
    key = schema.event_key(batch)
    if current is not None and set(key) <= set(current.columns):
        base = current.select(key)
    else:  # the first batch, or one whose columns differ (refused by ExpectColumnToExist above)
        base = pl.DataFrame(schema={c: pl.Int64 for c in key})
    merged = pl.concat([base, batch.select(key)]).unique()
    user_events = merged.group_by("user_id").len("user_events")
    item_events = merged.group_by("item_id").len("item_events")
    known_users = base.select("user_id").unique().with_columns(pl.lit(0.0).alias("new_user"))
    known_items = base.select("item_id").unique().with_columns(pl.lit(0.0).alias("new_item"))
    return (
        batch.join(user_events, on="user_id", how="left", maintain_order="left")
        .join(item_events, on="item_id", how="left", maintain_order="left")
        .join(known_users, on="user_id", how="left", maintain_order="left")
        .join(known_items, on="item_id", how="left", maintain_order="left")
        .with_columns(
            pl.col("new_user").fill_null(1.0),
            pl.col("new_item").fill_null(1.0),
            (
                (pl.col("user_events").fill_null(0) >= cfg.min_user_interactions)
                & (pl.col("item_events").fill_null(0) >= cfg.min_item_interactions)
            )
            .cast(pl.Float64)
            .alias("reaches_minimums"),
        )
    )


def _run(
    frame: pl.DataFrame, expectations: list[Any], docs_dir: Path | None, rows: int | None = None
) -> ValidationResult:
    import great_expectations as gx  # heavy import (seconds): only when validating

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = _no_progress_bars()
    batch = (
        context.data_sources.add_pandas("interactions")
        .add_dataframe_asset("interactions")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="interactions", expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="interactions", data=batch, suite=suite)
    )
    parameters = {"dataframe": frame.to_pandas()}
    if docs_dir is None:
        result = definition.run(batch_parameters=parameters, result_format="SUMMARY")
    else:
        result = _run_with_docs(context, definition, parameters, docs_dir)
    checks = tuple(_check(r.to_json_dict()) for r in result.results)
    return ValidationResult(
        passed=bool(result.success), rows=frame.height if rows is None else rows, checks=checks
    )


def _run_with_docs(context: Any, definition: Any, parameters: dict[str, Any], docs_dir: Path) -> Any:
    """Validate through a checkpoint that renders GX Data Docs (HTML) into `docs_dir`."""
    import great_expectations as gx

    context.add_data_docs_site(
        "local",
        {
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir.resolve()),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="interactions",
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=["local"])],
            result_format="SUMMARY",
        )
    )
    outcome = checkpoint.run(batch_parameters=parameters)
    return next(iter(outcome.run_results.values()))


def _check(result: dict[str, Any]) -> Check:
    config = result["expectation_config"]
    details = result.get("result") or {}
    sample = details.get("partial_unexpected_list") or []
    observed = details.get("observed_value")
    return Check(
        expectation=config["type"],
        column=config["kwargs"].get("column") or ",".join(config["kwargs"].get("column_list", [])) or None,
        passed=bool(result["success"]),
        unexpected_count=int(details.get("unexpected_count") or (0 if result["success"] else 1)),
        unexpected_sample=tuple(_plain(v) for v in sample[:5]),
        observed=_plain(observed) if observed is not None else None,
        rows=tuple(int(i) for i in (details.get("partial_unexpected_index_list") or [])[:5]),
    )


def _plain(value: Any) -> Any:
    """JSON-friendly value (GX hands back numpy/pandas scalars, dicts of them for compound checks)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value.item() if hasattr(value, "item") else value


def _no_progress_bars() -> Any:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    return ProgressBarsConfig(globally=False)
