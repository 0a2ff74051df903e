from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from {{ cookiecutter.package_name }}.data import schema, sources
from {{ cookiecutter.package_name }}.data.split import random_split, split, temporal_split
from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.settings import DataConfig, SplitConfig, SyntheticConfig

pytestmark = pytest.mark.unit

SMALL = SyntheticConfig(n_users=400, n_items=300, n_interactions=10_000)


def _contract(frame: pl.DataFrame) -> None:
    assert frame.columns[:3] == ["user_id", "item_id", "timestamp"]
    assert {name: frame.schema[name] for name in frame.columns} == {
        n: schema.DTYPES[n] for n in frame.columns
    }


# -- synthetic ---------------------------------------------------------------------------------------------


def test_synthetic_is_seeded_sized_and_unique() -> None:
    a, b = generate(SMALL, seed=1), generate(SMALL, seed=1)
    _contract(a)
    assert a.equals(b)
    assert not a.equals(generate(SMALL, seed=2))
    assert a.height == SMALL.n_interactions
    assert a.select("user_id", "item_id").is_duplicated().sum() == 0
    assert a.get_column("timestamp").is_sorted()
    assert a.get_column("rating").is_between(1, 5).all()


def test_synthetic_has_power_law_popularity_and_skewed_activity() -> None:
    frame = generate(SyntheticConfig(n_users=2_000, n_items=1_000, n_interactions=50_000), seed=3)
    counts = frame.group_by("item_id").len().get_column("len").sort(descending=True).to_numpy()
    top_share = counts[: len(counts) // 10].sum() / counts.sum()
    assert top_share > 0.35, f"top 10% of items hold only {top_share:.0%} of events"
    activity = frame.group_by("user_id").len().get_column("len").to_numpy()
    assert activity.max() > 5 * np.median(activity)


def test_synthetic_refuses_impossible_density() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        generate(SyntheticConfig(n_users=10, n_items=10, n_interactions=90), seed=0)


# -- MovieLens ---------------------------------------------------------------------------------------------

ROWS = [(1, 10, 4.0, 881250949), (2, 20, 3.0, 891717742), (1, 30, 5.0, 878887116)]


@pytest.mark.parametrize("layout", ["u.data", "ratings.dat", "ratings.csv"])
def test_movielens_formats_are_detected(tmp_path: Path, layout: str) -> None:
    if layout == "u.data":
        text = "".join(f"{u}\t{i}\t{int(r)}\t{t}\n" for u, i, r, t in ROWS)
    elif layout == "ratings.dat":
        text = "".join(f"{u}::{i}::{int(r)}::{t}\n" for u, i, r, t in ROWS)
    else:
        text = "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in ROWS)
    (tmp_path / layout).write_text(text)
    frame = sources.load(DataConfig(source="movielens", path=tmp_path), seed=0)
    _contract(frame)
    assert sorted(frame.rows()) == sorted((u, i, t, r) for u, i, r, t in ROWS)
    assert frame.get_column("timestamp").is_sorted()


def test_movielens_directory_without_ratings_names_the_expected_files(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("nothing here")
    with pytest.raises(sources.SourceError, match="u.data, ratings.dat, ratings.csv"):
        sources.load(DataConfig(source="movielens", path=tmp_path), seed=0)


def test_movielens_bad_id_names_file_column_and_row(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t10\t4\t881250949\nx7\t20\t3\t891717742\n")
    with pytest.raises(schema.ContractError, match=r"u\.data.*'user_id'.*row\(s\) \[1\].*x7"):
        sources.load(DataConfig(source="movielens", path=tmp_path), seed=0)


def test_real_ml100k_reference_counts(ml100k: Path) -> None:
    frame = sources.load(DataConfig(source="movielens", path=ml100k), seed=0)
    _contract(frame)
    assert frame.height == 100_000
    assert frame.get_column("user_id").n_unique() == 943
    assert frame.get_column("item_id").n_unique() == 1_682
    assert frame.get_column("rating").value_counts().sort("rating").get_column("count").to_list() == [
        6_110,
        11_370,
        27_145,
        34_174,
        21_201,
    ]


# -- generic files -----------------------------------------------------------------------------------------


def _file_cfg(path: Path, **extra: object) -> DataConfig:
    columns = {"user_id": "uid", "item_id": "sku", "timestamp": "when", "rating": None}
    return DataConfig(source="file", path=path, columns=columns, **extra)


def test_csv_with_column_map_and_ms_timestamps(tmp_path: Path) -> None:
    file = tmp_path / "events.csv"
    file.write_text("uid;sku;when;extra\n5;7;1700000000123;x\n6;8;1700000001999;y\n")
    frame = sources.load(_file_cfg(file, csv_separator=";", timestamp_unit="ms"), seed=0)
    _contract(frame)
    assert frame.columns == ["user_id", "item_id", "timestamp"]
    assert frame.rows() == [(5, 7, 1_700_000_000), (6, 8, 1_700_000_001)]


def test_parquet_directory_and_iso_timestamps(tmp_path: Path) -> None:
    pl.DataFrame({"uid": [1], "sku": [2], "when": ["2024-01-01T00:00:00Z"]}).write_parquet(
        tmp_path / "a.parquet"
    )
    pl.DataFrame({"uid": [3], "sku": [4], "when": ["2024-01-02T00:00:00Z"]}).write_parquet(
        tmp_path / "b.parquet"
    )
    frame = sources.load(_file_cfg(tmp_path, timestamp_unit="iso"), seed=0)
    assert frame.rows() == [(1, 2, 1_704_067_200), (3, 4, 1_704_153_600)]


def test_missing_mapped_column_names_it_and_hints_at_separator(tmp_path: Path) -> None:
    file = tmp_path / "events.csv"
    file.write_text("uid;sku;when\n1;2;3\n")
    with pytest.raises(sources.SourceError, match=r"events\.csv.*\['uid', 'sku', 'when'\].*csv_separator"):
        sources.load(_file_cfg(file), seed=0)


def test_fractional_id_is_rejected_not_truncated(tmp_path: Path) -> None:
    file = tmp_path / "events.parquet"
    pl.DataFrame({"uid": [1.0, 2.5], "sku": [1, 2], "when": [1, 2]}).write_parquet(file)
    with pytest.raises(schema.ContractError, match=r"'user_id'.*2\.5"):
        sources.load(_file_cfg(file), seed=0)


def test_empty_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("uid,sku,when\n")
    with pytest.raises(sources.SourceError, match="empty.csv: no rows"):
        sources.load(_file_cfg(empty), seed=0)
    with pytest.raises(sources.SourceError, match="does not exist"):
        sources.load(_file_cfg(tmp_path / "absent.csv"), seed=0)


def test_source_does_not_modify_input_files(tmp_path: Path) -> None:
    file = tmp_path / "events.csv"
    file.write_text("uid,sku,when\n2,1,9\n1,1,5\n")
    before = file.read_bytes()
    sources.load(_file_cfg(file), seed=0)
    assert file.read_bytes() == before


# -- splits ------------------------------------------------------------------------------------------------


def test_temporal_split_puts_every_test_event_after_every_train_event() -> None:
    frame = generate(SMALL, seed=4)
    parts = temporal_split(frame, 0.25)
    assert parts.train.height + parts.test.height == frame.height
    assert parts.train.get_column("timestamp").max() < parts.test.get_column("timestamp").min()
    assert abs(parts.test.height / frame.height - 0.25) < 0.01


def test_random_split_is_seeded_and_disjoint() -> None:
    frame = generate(SMALL, seed=4)
    a, b = random_split(frame, 0.2, seed=1), random_split(frame, 0.2, seed=1)
    assert a.train.equals(b.train) and a.test.equals(b.test)
    assert not random_split(frame, 0.2, seed=2).test.equals(a.test)
    assert a.test.height == 2_000
    assert a.train.join(a.test, on=["user_id", "item_id", "timestamp"]).height == 0


def test_split_does_not_depend_on_input_row_order() -> None:
    frame = generate(SMALL, seed=4)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=9)
    for cfg in (SplitConfig(strategy="temporal"), SplitConfig(strategy="random")):
        assert split(frame, cfg, seed=0).test.equals(split(shuffled, cfg, seed=0).test)


def test_leave_last_out_holds_out_each_users_latest_event() -> None:
    frame = pl.DataFrame(
        {"user_id": [1, 1, 1, 2, 2, 3], "item_id": [5, 6, 7, 5, 8, 9], "timestamp": [10, 30, 20, 5, 5, 1]}
    )
    parts = split(frame, SplitConfig(strategy="leave-last-out"), seed=0)
    assert sorted(parts.test.select("user_id", "item_id").rows()) == [(1, 6), (2, 8)]  # user 3 has one event
    assert parts.train.height == 4 and parts.train.filter(pl.col("user_id") == 3).height == 1


def test_user_random_split_takes_a_share_of_every_user() -> None:
    frame = generate(SMALL, seed=4)
    a = split(frame, SplitConfig(strategy="user-random", test_fraction=0.25), seed=3)
    assert a.test.equals(split(frame, SplitConfig(strategy="user-random", test_fraction=0.25), seed=3).test)
    counts = frame.group_by("user_id").len().join(a.test.group_by("user_id").len(), on="user_id", how="left")
    expected = (counts.get_column("len") * 0.25).round().clip(upper_bound=counts.get_column("len") - 1)
    assert counts.get_column("len_right").fill_null(0).to_list() == expected.cast(pl.UInt32).to_list()
    assert a.train.join(a.test, on=["user_id", "item_id", "timestamp"]).height == 0


def test_k_core_and_rating_threshold_filter_before_splitting() -> None:
    frame = generate(SMALL, seed=4)
    parts = split(frame, SplitConfig(strategy="random", k_core=10, min_rating=3.0), seed=0)
    kept = pl.concat([parts.train, parts.test])
    assert kept.get_column("rating").min() >= 3.0 and 0 < kept.height < frame.height
    assert kept.group_by("user_id").len().get_column("len").min() >= 10
    assert kept.group_by("item_id").len().get_column("len").min() >= 10
    with pytest.raises(ValueError, match="no rating column"):
        split(frame.drop("rating"), SplitConfig(min_rating=3.0), seed=0)


def test_byte_identical_files_of_a_directory_are_read_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a.csv").write_text("uid,sku,when\n1,2,1700000000\n3,4,1700000001\n")
    (tmp_path / "copy-of-a.csv").write_bytes((tmp_path / "a.csv").read_bytes())
    (tmp_path / "b.csv").write_text("uid,sku,when\n5,6,1700000002\n")
    frame = sources.load(_file_cfg(tmp_path), seed=0)
    assert frame.rows() == [(1, 2, 1_700_000_000), (3, 4, 1_700_000_001), (5, 6, 1_700_000_002)]
    assert "copy-of-a.csv: the same bytes as a.csv, read once" in caplog.text
