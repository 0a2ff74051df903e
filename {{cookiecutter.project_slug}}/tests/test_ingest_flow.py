"""The ingest command and flow on a real (temporary) Prefect server, then training on the snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from {{ cookiecutter.package_name }}.artifacts import ArtifactStore
from {{ cookiecutter.package_name }}.artifacts.landing import current_snapshot
from {{ cookiecutter.package_name }}.cli import app, load_entrypoint
from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.settings import SyntheticConfig, load_settings

# The flows as a worker loads them: by file path, from the project root.
pipeline = load_entrypoint("flows/pipeline.py:pipeline")
ingest_and_train = load_entrypoint("flows/retrain.py:ingest_and_train")

pytestmark = pytest.mark.usefixtures("prefect_server")
DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
EVENTS = generate(SyntheticConfig(n_users=200, n_items=120, n_interactions=3_000), seed=8)


def _invoke(tmp_path: Path, *args: str) -> tuple[int, str]:
    options = [
        "--config", str(DEFAULT),
        "--set", f"ingest.landing={tmp_path / 'landing'}",
        "--set", f"ingest.quarantine={tmp_path / 'quarantine'}",
        "--set", f"storage.uri={tmp_path / 'store'}",
        "--set", "ingest.settle_seconds=0",  # whole files, written just before
    ]  # fmt: skip
    result = CliRunner().invoke(app, [*args, *options], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_ingest_landing_zone_then_train_on_the_snapshot(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    EVENTS.head(2_000).write_csv(landing / "2026-01-01.csv")
    EVENTS.slice(2_000, 1_000).write_parquet(landing / "2026-01-02.parquet")
    EVENTS.slice(2_000, 10).with_columns(rating=42.0).write_csv(landing / "2026-01-03.csv")

    code, out = _invoke(tmp_path, "ingest")
    assert code == 1, out
    assert "taken in 2026-01-01.csv: 2,000 rows, 2,000 new events" in out
    assert "taken in 2026-01-02.parquet: 1,000 rows, 1,000 new events" in out
    assert "refused 2026-01-03.csv" in out and "expect_column_values_to_be_between(rating)" in out
    assert "1 batch(es) refused and quarantined" in out
    assert sorted(p.name for p in landing.iterdir()) == []

    code, out = _invoke(tmp_path, "quarantine")
    assert code == 0 and "2026-01-03.csv" in out and "rating" in out

    store = ArtifactStore(str(tmp_path / "store"))
    pointer = current_snapshot(store)
    assert pointer["rows"] == 3_000
    settings = load_settings(
        [DEFAULT], {"data": {"source": "snapshot"}, "storage": {"uri": str(tmp_path / "store")}}
    )
    summary = pipeline(settings.resolved())
    assert summary["dataset"]["id"] == pointer["snapshot"]["id"] and summary["dataset"]["rows"] == 3_000


def test_ingest_one_file_by_path(tmp_path: Path) -> None:
    batch = tmp_path / "elsewhere.csv"
    EVENTS.head(500).write_csv(batch)
    code, out = _invoke(tmp_path, "ingest", "--path", str(batch))
    assert code == 0, out
    assert "taken in elsewhere.csv: 500 rows, 500 new events" in out
    assert batch.is_file()  # a file outside the landing zone is left where it was

    code, out = _invoke(tmp_path, "ingest", "--path", str(tmp_path / "missing.csv"))
    assert code == 2 and "batch file does not exist" in out


def test_an_event_path_outside_the_landing_zone_fails_in_one_line(tmp_path: Path) -> None:
    """The new-data deployment runs with whatever `payload.path` an event names: only the landing zone's."""
    secret = tmp_path / "secret.csv"
    EVENTS.head(500).write_csv(secret)  # a valid batch, still not ours to take
    settings = load_settings(
        [DEFAULT],
        {"ingest": {"landing": str(tmp_path / "landing")}, "storage": {"uri": str(tmp_path / "store")}},
    )
    for path in (secret, tmp_path / "landing" / ".." / "secret.csv"):
        state = ingest_and_train(settings.resolved(), path=str(path), return_state=True)
        zone = (tmp_path / "landing").resolve()
        assert state.is_failed()
        assert state.message == f"{path} is not in the landing zone {zone}: only files there are ingested"
    assert current_snapshot(ArtifactStore(str(tmp_path / "store"))) is None and secret.is_file()


def test_a_link_in_the_landing_zone_is_reported_once(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    (tmp_path / "secret.env").write_text("PASSWORD=SECRET-VALUE\n")
    (landing / "batch.csv").symlink_to(tmp_path / "secret.env")
    code, out = _invoke(tmp_path, "ingest")
    assert code == 1 and "refused batch.csv" in out and "symbolic link" in out and "SECRET" not in out
    code, out = _invoke(tmp_path, "ingest")  # set aside: not again at every ingest
    assert code == 0 and "nothing waiting" in out
    assert (tmp_path / "quarantine" / "batch.csv").is_symlink()


def test_pipeline_on_snapshot_before_any_ingest_is_a_clear_error(tmp_path: Path) -> None:
    settings = load_settings(
        [DEFAULT], {"data": {"source": "snapshot"}, "storage": {"uri": str(tmp_path / "s")}}
    )
    state = pipeline(settings.resolved(), return_state=True)
    assert state.is_failed()
    with pytest.raises(FileNotFoundError, match="nothing was ingested yet"):
        state.result()


def test_a_file_still_arriving_is_left_and_named(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    EVENTS.head(500).write_csv(landing / "arriving.csv")  # just written: not settled yet
    options = [f"--set=ingest.landing={landing}", f"--set=storage.uri={tmp_path / 'store'}"]
    options.append("--set=ingest.settle_seconds=60")  # a minute, whatever the machine's load
    result = CliRunner().invoke(app, ["ingest", "--config", str(DEFAULT), *options], env={"COLUMNS": "200"})
    code, out = result.exit_code, result.output
    assert code == 0 and "nothing waiting" in out and "1 file(s) still arriving" in out, out
    assert (landing / "arriving.csv").is_file() and not (tmp_path / "store" / "snapshots").exists()
