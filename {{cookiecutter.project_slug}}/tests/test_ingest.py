"""Batches into snapshots: a corpus of broken inputs is refused with a reason and nothing is lost."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from {{ cookiecutter.package_name }}.artifacts import ArtifactRef, ArtifactStore
from {{ cookiecutter.package_name }}.artifacts.landing import LandingZone, OutsideLandingZone, current_snapshot
from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.ingestion import ingest_batch
from {{ cookiecutter.package_name }}.settings import Settings, SyntheticConfig, load_settings

pytestmark = pytest.mark.unit

DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
NOW = 1_800_000_000
EVENTS = generate(SyntheticConfig(n_users=150, n_items=100, n_interactions=1_200), seed=5)
FIRST, SECOND = EVENTS.head(800), EVENTS.slice(800, 200)  # the second batch: same users and items, later


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        [DEFAULT],
        {
            # Files here are written whole before each ingest: no need to wait for them to settle.
            "ingest": {
                "landing": str(tmp_path / "landing"),
                "quarantine": str(tmp_path / "quarantine"),
                "settle_seconds": 0,
            },
            "storage": {"uri": str(tmp_path / "store")},
            "validation": {"max_batch_rows": 900},
        },
    )


@pytest.fixture
def store(settings: Settings) -> ArtifactStore:
    return ArtifactStore(settings.storage.uri)


def _land(settings: Settings, name: str, data: bytes) -> Path:
    settings.ingest.landing.mkdir(parents=True, exist_ok=True)
    path = settings.ingest.landing / name
    path.write_bytes(data)
    return path


def _csv(frame: pl.DataFrame, separator: str = ",") -> bytes:
    return frame.write_csv(separator=separator).encode()


@pytest.fixture
def seeded(settings: Settings, store: ArtifactStore) -> dict:
    outcome = ingest_batch(_land(settings, "first.csv", _csv(FIRST)), settings, store, now=NOW)
    assert outcome.accepted, outcome.reasons
    return current_snapshot(store)


def _replace_column(name: str, values: list) -> bytes:
    return _csv(SECOND.head(len(values)).with_columns(pl.Series(name, values)))


def _truncated_parquet() -> bytes:
    import io

    buf = io.BytesIO()
    SECOND.write_parquet(buf)
    return buf.getvalue()[: len(buf.getvalue()) // 2]


CORPUS: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "empty file": ("empty.csv", lambda: b"", r"cannot be read"),
    "truncated parquet": ("cut.parquet", _truncated_parquet, r"cannot be read"),
    "wrong delimiter": ("semi.csv", lambda: _csv(SECOND, ";"), r"separated by ';'.*data.csv_separator=';'"),
    "missing column": (
        "noitem.csv",
        lambda: _csv(SECOND.drop("item_id")),
        r"data.columns.item_id='item_id' is not a column; its columns are \['user_id', 'timestamp', 'rat",
    ),
    "extra columns": (
        "extra.csv",
        lambda: _csv(SECOND.with_columns(pl.lit("x").alias("device"))),
        r"unexpected column.*device",
    ),
    "non-numeric ids": (
        "alpha.csv",
        lambda: _replace_column("user_id", ["u1", "u2", "u3"]),
        r"'user_id' must be Int64.*u1",
    ),
    "NaN ids": (
        "nan.csv",
        lambda: _replace_column("item_id", ["1", "NaN", "3"]),
        r"'item_id' must be Int64.*NaN",
    ),
    "null ids": (
        "null.csv",
        lambda: _replace_column("user_id", [1, None, 3]),
        r"expect_column_values_to_not_be_null\(user_id\)",
    ),
    "rating out of range": (
        "rating.csv",
        lambda: _replace_column("rating", [4.0, 11.0, -1.0]),
        r"to_be_between\(rating\).*11\.0",
    ),
    "milliseconds timestamps": (
        "ms.csv",
        lambda: _csv(SECOND.with_columns(pl.col("timestamp") * 1000)),
        r"to_be_between\(timestamp\)",
    ),
    "future timestamps": (
        "future.csv",
        lambda: _csv(SECOND.with_columns(pl.lit(NOW + 30 * 86_400).alias("timestamp"))),
        r"to_be_between\(timestamp\)",
    ),
    "duplicated rows": (
        "dupes.csv",
        lambda: _csv(pl.concat([SECOND, SECOND.head(5)])),
        r"compound_columns_to_be_unique",
    ),
    "batch beyond size bound": (
        "huge.csv",
        lambda: _csv(pl.concat([SECOND.with_columns(pl.col("timestamp") + i) for i in range(5)])),
        r"table_row_count_to_be_between.*observed 1000",
    ),
    # Not `..\\..\\evil.csv`: a dot-prefixed name is a file still being written, never taken in.
    "path traversal name": (
        "in\\..\\..\\evil.csv",
        lambda: _csv(SECOND),
        r"file name .* has characters outside",
    ),
    "non-UTF-8 bytes": (
        "latin1.csv",
        lambda: "user_id,item_id,timestamp,rating\n1,2,1700000000,4\n\xe9\xe8,3,1700000001,5\n".encode(
            "latin-1"
        ),
        r"cannot be read|must be Int64",
    ),
    "NaN ratings": (
        "nanrating.csv",
        lambda: _replace_column("rating", [4.0, float("nan"), 3.0]),
        r"expect_column_values_to_not_be_null\(rating\): 1 unexpected",
    ),
    "missing ratings": (
        "norating.csv",
        lambda: _replace_column("rating", [4.0, None, 3.0]),
        r"expect_column_values_to_not_be_null\(rating\): 1 unexpected",
    ),
    "no rating column under rated events": (
        "unrated.csv",
        lambda: _csv(SECOND.drop("rating")),
        r"expect_column_to_exist\(rating\)",
    ),
    "header only": ("header.csv", lambda: b"user_id,item_id,timestamp,rating\n", r"no rows"),
    "mixed types in a column": (
        "mixed.csv",
        lambda: _replace_column("timestamp", ["1700000000", "2024-01-01", "1700000100"]),
        r"'timestamp' must be Int64.*2024-01-01",
    ),
    "mostly unknown items": (
        "newitems.csv",
        lambda: _csv(SECOND.with_columns(pl.col("item_id") + 10_000)),
        r"mean_to_be_between\(new_item\)",
    ),
    # Any name is read as delimited text (data.format): a JSON document is refused by what it holds.
    "JSON, not delimited text": ("events.json", lambda: b'{"user_id": 1}\n{"user_id": 2}\n', r"single col"),
}


@pytest.mark.parametrize("case", list(CORPUS))
def test_bad_batch_is_refused_and_nothing_is_lost(
    case: str, settings: Settings, store: ArtifactStore, seeded: dict
) -> None:
    name, make, reason = CORPUS[case]
    data = make()
    path = _land(settings, name, data)
    outcome = ingest_batch(path, settings, store, now=NOW)

    assert not outcome.accepted
    assert any(re.search(reason, r) for r in outcome.reasons), outcome.reasons
    # The current snapshot did not move and is still readable.
    assert current_snapshot(store) == seeded
    assert store.get_frame(ArtifactRef(**seeded["snapshot"])).height == FIRST.height
    # The batch left the landing zone for quarantine, byte for byte, with its reasons beside it.
    assert LandingZone(settings.ingest).waiting() == []
    kept = Path(outcome.quarantined_to)
    assert kept.parent == settings.ingest.quarantine and kept.read_bytes() == data
    recorded = json.loads((kept.parent / f"{kept.name}.reason.json").read_text())
    assert recorded["reasons"] == outcome.reasons and recorded["batch"]["sha256"] == outcome.batch["sha256"]
    if outcome.validation is not None:  # refused by an expectation (not by the reader): its result is stored
        checks = store.get_json(_ref(store, outcome.validation, ".json"))["checks"]
        assert any(not c["passed"] for c in checks)


def test_corpus_has_at_least_fifteen_kinds() -> None:
    assert len(CORPUS) >= 15


def test_good_batch_after_a_bad_one_is_taken_in(
    settings: Settings, store: ArtifactStore, seeded: dict
) -> None:
    bad = ingest_batch(_land(settings, "bad.csv", _replace_column("rating", [9.0])), settings, store, now=NOW)
    assert not bad.accepted
    good = ingest_batch(_land(settings, "second.csv", _csv(SECOND)), settings, store, now=NOW)
    assert good.accepted and good.added == SECOND.height and good.previous == seeded["snapshot"]["id"]
    pointer = current_snapshot(store)
    assert pointer["snapshot"]["id"] == good.snapshot and pointer["previous"] == seeded["snapshot"]["id"]
    assert [b["name"] for b in pointer["batches"]] == ["first.csv", "second.csv"]
    assert store.get_frame(ArtifactRef(**pointer["snapshot"])).height == FIRST.height + SECOND.height
    # The batch's bytes are kept in the store; the previous snapshot too.
    assert store.get_bytes(_ref(store, pointer["batches"][1]["artifact"], ".csv")) == _csv(SECOND)
    assert store.get_frame(ArtifactRef(**seeded["snapshot"])).height == FIRST.height


def _ref(store: ArtifactStore, digest: str, suffix: str) -> ArtifactRef:
    return ArtifactRef(id=digest, uri=store.uri_of(f"objects/{digest[:2]}/{digest}{suffix}"), kind="", size=0)


def test_same_batch_twice_changes_nothing(settings: Settings, store: ArtifactStore, seeded: dict) -> None:
    again = ingest_batch(_land(settings, "first.csv", _csv(FIRST)), settings, store, now=NOW)
    assert again.accepted and again.reasons == ["already ingested"]
    assert current_snapshot(store) == seeded
    overlapping = ingest_batch(
        _land(settings, "overlap.csv", _csv(FIRST.head(100))), settings, store, now=NOW
    )
    assert overlapping.accepted and overlapping.added == 0
    assert current_snapshot(store)["snapshot"]["id"] == seeded["snapshot"]["id"]


def test_refusal_report_shows_offending_rows(settings: Settings, store: ArtifactStore, seeded: dict) -> None:
    outcome = ingest_batch(
        _land(settings, "r.csv", _replace_column("rating", [4.0, 11.0])), settings, store, now=NOW
    )
    assert "rating" in outcome.report and "| 11.0 |" in outcome.report
    assert outcome.docs is not None and (Path(outcome.docs.removeprefix("file://")) / "index.html").is_file()


def test_release_moves_a_fixed_batch_back(settings: Settings, store: ArtifactStore, seeded: dict) -> None:
    outcome = ingest_batch(
        _land(settings, "fixme.csv", _replace_column("rating", [9.0])), settings, store, now=NOW
    )
    zone = LandingZone(settings.ingest)
    assert [q["name"] for q in zone.quarantined()] == ["fixme.csv"]
    fixed = Path(outcome.quarantined_to)
    fixed.write_bytes(_csv(SECOND))
    released = zone.release("fixme.csv")
    assert zone.quarantined() == [] and zone.waiting() == [released]
    assert ingest_batch(released, settings, store, now=NOW).accepted


# Confinement: what lands as a link (or a FIFO) is never opened, and a path elsewhere is never ingested.
SECRET = b"root:x:0:0:SECRET-LINE:/root:/bin/bash\n"


def _assert_never_quoted(settings: Settings, outcome: object) -> None:
    quarantine = settings.ingest.quarantine
    stored = b"".join(p.read_bytes() for p in quarantine.iterdir() if p.is_file() and not p.is_symlink())
    assert b"SECRET" not in stored and "SECRET" not in json.dumps(outcome.to_dict())


@pytest.mark.parametrize("target", ["secret", "valid-csv"])
def test_a_link_in_the_landing_zone_is_set_aside_unread_once(
    target: str, tmp_path: Path, settings: Settings, store: ArtifactStore, seeded: dict
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    aim = outside / "target.csv"
    aim.write_bytes(SECRET if target == "secret" else _csv(SECOND))
    link = settings.ingest.landing / "linked.csv"
    link.symlink_to(aim)
    zone = LandingZone(settings.ingest)
    assert zone.waiting() == [] and zone.refused() == [link]  # never a batch, listed as refused

    outcome = ingest_batch(link, settings, store, now=NOW)
    assert not outcome.accepted and outcome.quarantined_to
    assert outcome.batch == {"name": "linked.csv", "size": len(str(aim))}  # the link's own size, no hash
    assert outcome.reasons == [
        f"linked.csv ({len(str(aim))} bytes) is a symbolic link, not a regular file: "
        "refused without reading or following it"
    ]
    assert current_snapshot(store) == seeded  # a valid CSV behind a link is not taken in either
    kept = Path(outcome.quarantined_to)
    # Moved as the link it is; its target stays where it was.
    assert kept.is_symlink() and not os.path.lexists(link) and aim.read_bytes()
    _assert_never_quoted(settings, outcome)
    assert zone.refused() == [] and [q["name"] for q in zone.quarantined()] == ["linked.csv"]
    with pytest.raises(FileNotFoundError, match="symbolic link"):
        zone.release("linked.csv")  # back into the landing zone it would only be refused again


def test_a_fifo_in_the_landing_zone_is_refused_without_blocking(
    settings: Settings, store: ArtifactStore
) -> None:
    settings.ingest.landing.mkdir(parents=True)
    fifo = settings.ingest.landing / "pipe.csv"
    os.mkfifo(fifo)
    outcome = ingest_batch(fifo, settings, store, now=NOW)  # opening it to read would wait for a writer
    assert outcome.quarantined_to and "is a FIFO" in outcome.reasons[0]
    assert not os.path.lexists(fifo)


def test_a_link_swapped_in_after_listing_is_caught_when_opened(tmp_path: Path, settings: Settings) -> None:
    settings.ingest.landing.mkdir(parents=True)
    (tmp_path / "target.csv").write_bytes(SECRET)
    link = settings.ingest.landing / "swapped.csv"
    link.symlink_to(tmp_path / "target.csv")
    read = LandingZone(settings.ingest).read(link)  # O_NOFOLLOW, whatever the listing said
    assert not hasattr(read, "data") and read.kind == "a symbolic link"


@pytest.mark.parametrize(
    "path", ["{tmp}/outside.csv", "{landing}/../outside.csv", "{landing}/sub/x.csv", "{linked}/outside.csv"]
)
def test_a_path_outside_the_landing_zone_is_never_opened(
    path: str, tmp_path: Path, settings: Settings, store: ArtifactStore
) -> None:
    (settings.ingest.landing / "sub").mkdir(parents=True)
    (tmp_path / "outside.csv").write_bytes(_csv(SECOND))
    (settings.ingest.landing / "sub" / "x.csv").write_bytes(_csv(SECOND))
    (settings.ingest.landing / "linked").symlink_to(tmp_path)  # a folder link: resolves outside
    landing = settings.ingest.landing
    named = Path(path.format(tmp=tmp_path, landing=landing, linked=landing / "linked"))
    with pytest.raises(OutsideLandingZone, match="is not in the landing zone"):
        ingest_batch(named, settings, store, now=NOW)
    assert current_snapshot(store) is None and (tmp_path / "outside.csv").is_file()
    assert not settings.ingest.quarantine.exists()


def test_reader_errors_do_not_quote_a_file_that_is_no_batch(settings: Settings, store: ArtifactStore) -> None:
    """A secrets file dropped in the landing zone is refused naming it, its size and hash: not its lines."""
    outcome = ingest_batch(_land(settings, "passwd.csv", SECRET * 3), settings, store, now=NOW)
    assert outcome.quarantined_to and "data.columns.user_id='user_id' is not a column" in outcome.reasons[0]
    env = b'API_KEY=SECRET-1\nDB="SECRET-2\n'  # an unclosed quote: polars would quote the line
    outcome = ingest_batch(_land(settings, "env.csv", env), settings, store, now=NOW)
    assert outcome.quarantined_to
    for reason in json.loads((Path(outcome.quarantined_to + ".reason.json")).read_text())["reasons"]:
        assert "SECRET" not in reason
    assert "SECRET" not in json.dumps(outcome.to_dict())
