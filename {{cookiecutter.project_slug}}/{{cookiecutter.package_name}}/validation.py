"""Great Expectations checks on the interactions contract, reduced to a small result object.

The suite is built from the contract and the thresholds in `ValidationConfig`; the flow branches on
`ValidationResult.passed` and reports `failures()`. GX runs in an ephemeral context: nothing is written.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from .data import schema
from .settings import ValidationConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    expectation: str
    column: str | None
    passed: bool
    unexpected_count: int
    unexpected_sample: tuple[Any, ...]


@dataclass(frozen=True)
class ValidationResult:
    passed: bool
    rows: int
    checks: tuple[Check, ...]

    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def summary(self) -> str:
        if self.passed:
            return f"all {len(self.checks)} expectations passed on {self.rows} rows"
        parts = [
            f"{c.expectation}({c.column or 'table'}): {c.unexpected_count} unexpected, "
            f"e.g. {list(c.unexpected_sample)}"
            for c in self.failures()
        ]
        return f"{len(parts)} of {len(self.checks)} expectations failed on {self.rows} rows: " + "; ".join(
            parts
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate(frame: pl.DataFrame, cfg: ValidationConfig, now: int) -> ValidationResult:
    """Run the interactions suite on `frame`; `now` (Unix seconds) bounds how far ahead events may be."""
    import great_expectations as gx  # heavy import (seconds): only when validating

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = _no_progress_bars()
    batch = (
        context.data_sources.add_pandas("interactions")
        .add_dataframe_asset("interactions")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(
        gx.ExpectationSuite(name="interactions", expectations=_expectations(frame, cfg, now))
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="interactions", data=batch, suite=suite)
    )
    result = definition.run(batch_parameters={"dataframe": frame.to_pandas()}, result_format="SUMMARY")

    checks = tuple(_check(r.to_json_dict()) for r in result.results)
    return ValidationResult(passed=bool(result.success), rows=frame.height, checks=checks)


def _expectations(frame: pl.DataFrame, cfg: ValidationConfig, now: int) -> list[Any]:
    import great_expectations.expectations as gxe

    expectations: list[Any] = [gxe.ExpectTableRowCountToBeBetween(min_value=1)]
    expectations += [gxe.ExpectColumnValuesToNotBeNull(column=name) for name in schema.REQUIRED]
    expectations.append(
        gxe.ExpectColumnValuesToBeBetween(
            column="timestamp", min_value=cfg.timestamp_min, max_value=now + cfg.max_future_seconds
        )
    )
    if "rating" in frame.columns:
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="rating", min_value=cfg.rating_min, max_value=cfg.rating_max
            )
        )
    return expectations


def _check(result: dict[str, Any]) -> Check:
    config = result["expectation_config"]
    details = result.get("result") or {}
    sample = details.get("partial_unexpected_list") or []
    return Check(
        expectation=config["type"],
        column=config["kwargs"].get("column"),
        passed=bool(result["success"]),
        unexpected_count=int(details.get("unexpected_count") or (0 if result["success"] else 1)),
        unexpected_sample=tuple(_plain(v) for v in sample[:5]),
    )


def _plain(value: Any) -> Any:
    """JSON-friendly scalar (GX hands back numpy/pandas scalars)."""
    return value.item() if hasattr(value, "item") else value


def _no_progress_bars() -> Any:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    return ProgressBarsConfig(globally=False)
