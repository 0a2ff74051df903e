from __future__ import annotations

import polars as pl
import pytest

from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.settings import SyntheticConfig, ValidationConfig
from {{ cookiecutter.package_name }}.validation import validate

pytestmark = pytest.mark.unit

NOW = 1_800_000_000
CFG = ValidationConfig()


@pytest.fixture(scope="module")
def good() -> pl.DataFrame:
    return generate(SyntheticConfig(n_users=200, n_items=100, n_interactions=3_000), seed=0)


def _failed(frame: pl.DataFrame) -> dict[tuple[str, str | None], int]:
    result = validate(frame, CFG, now=NOW)
    assert not result.passed
    return {(c.expectation, c.column): c.unexpected_count for c in result.failures()}


def test_good_data_passes(good: pl.DataFrame) -> None:
    result = validate(good, CFG, now=NOW)
    assert result.passed, result.summary()
    assert result.rows == good.height
    assert {c.column for c in result.checks} >= {"user_id", "item_id", "timestamp", "rating"}


def test_null_ids_fail_with_counts(good: pl.DataFrame) -> None:
    bad = good.with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(None).otherwise(pl.col("item_id")).alias("item_id")
    )
    assert _failed(bad) == {("expect_column_values_to_not_be_null", "item_id"): 3}


def test_rating_out_of_range_fails_and_samples_the_values(good: pl.DataFrame) -> None:
    bad = good.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(11.0).otherwise(pl.col("rating")).alias("rating")
    )
    result = validate(bad, CFG, now=NOW)
    (failure,) = result.failures()
    assert (failure.column, failure.unexpected_count, failure.unexpected_sample) == ("rating", 1, (11.0,))
    assert "rating" in result.summary() and "11.0" in result.summary()


def test_timestamps_in_the_future_or_before_start_fail(good: pl.DataFrame) -> None:
    future = good.with_columns(pl.lit(NOW + 10 * 86_400, dtype=pl.Int64).alias("timestamp"))
    assert _failed(future) == {("expect_column_values_to_be_between", "timestamp"): good.height}
    millis = good.with_columns((pl.col("timestamp") * 1000).alias("timestamp"))  # ms where seconds belong
    assert ("expect_column_values_to_be_between", "timestamp") in _failed(millis)
    ancient = good.head(10).with_columns(pl.lit(0, dtype=pl.Int64).alias("timestamp"))
    assert _failed(ancient) == {("expect_column_values_to_be_between", "timestamp"): 10}


def test_empty_frame_fails_on_row_count(good: pl.DataFrame) -> None:
    assert ("expect_table_row_count_to_be_between", None) in _failed(good.head(0))


def test_rating_is_optional(good: pl.DataFrame) -> None:
    assert validate(good.drop("rating"), CFG, now=NOW).passed


@pytest.mark.parametrize("missing", [float("nan"), None])
def test_nan_and_null_ratings_fail_where_between_would_skip_them(good: pl.DataFrame, missing: object) -> None:
    rating = pl.when(pl.int_range(pl.len()) < 2).then(pl.lit(missing, pl.Float64)).otherwise(pl.col("rating"))
    assert _failed(good.with_columns(rating.alias("rating"))) == {
        ("expect_column_values_to_not_be_null", "rating"): 2
    }


def test_a_repeated_event_fails_with_its_count(good: pl.DataFrame) -> None:
    """One row per event, as ingest keeps it: `run --source file` refuses a file repeating events."""
    assert _failed(pl.concat([good, good.head(4)])) == {
        ("expect_compound_columns_to_be_unique", "user_id,item_id,timestamp"): 8
    }
