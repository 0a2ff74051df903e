"""The same store and pipeline against S3-compatible storage: a moto S3 server started here on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import S3_BUCKET as BUCKET
from conftest import S3_KEY as KEY
from conftest import S3_SECRET as SECRET

from {{ cookiecutter.package_name }}.artifacts import open_store
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, StorageConfig, load_settings

pytestmark = pytest.mark.unit

DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


@pytest.fixture
def s3_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # Credentials reach the store only through the environment, as in production.
    monkeypatch.setenv(f"{ENV_PREFIX}STORAGE__ACCESS_KEY_ID", KEY)
    monkeypatch.setenv(f"{ENV_PREFIX}STORAGE__SECRET_ACCESS_KEY", SECRET)


def test_store_round_trip_on_s3(s3_endpoint: str, s3_credentials: None) -> None:
    storage = load_settings(
        [DEFAULT], {"storage": {"uri": f"s3://{BUCKET}/unit", "endpoint_url": s3_endpoint}}
    )
    store = open_store(storage.storage)
    frame = pl.DataFrame({"user_id": [1, 2], "item_id": [3, 4]})
    ref = store.put_frame(frame, kind="snapshot")
    assert ref.uri == f"objects/{ref.id[:2]}/{ref.id}.parquet"  # inside the store, wherever it is
    assert store.put_frame(frame, kind="snapshot") == ref
    assert store.get_frame(ref).equals(frame)
    uri = store.write_text("runs/r1/report.md", "# report")
    assert uri == f"s3://{BUCKET}/unit/runs/r1/report.md" and store.list("runs") == ["r1"]


def test_missing_credentials_fail_clearly(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    store = open_store(StorageConfig(uri=f"s3://{BUCKET}/unit", endpoint_url=s3_endpoint))
    with pytest.raises(Exception, match="(?i)credentials"):
        store.put_bytes(b"x", kind="test")


@pytest.mark.usefixtures("prefect_server", "s3_credentials")
def test_pipeline_runs_against_s3_by_configuration_alone(s3_endpoint: str, tmp_path: Path) -> None:
    from {{ cookiecutter.package_name }}.artifacts.runs import find_run
    from {{ cookiecutter.package_name }}.cli import load_entrypoint

    pipeline = load_entrypoint("flows/pipeline.py:pipeline")

    settings = load_settings(
        [DEFAULT],
        {
            "data": {"synthetic": {"n_users": 200, "n_items": 150, "n_interactions": 4_000}},
            "storage": {"uri": f"s3://{BUCKET}/pipeline", "endpoint_url": s3_endpoint},
            "registry": {"url": f"sqlite:///{tmp_path / 'registry.sqlite'}"},
        },
    )
    summary = pipeline(settings.resolved())
    assert all(a["uri"].startswith("objects/") for a in summary["artifacts"].values())
    # The same data and config with a local store: the very same artifact ids (only the place differs).
    local = settings.updated(
        {"storage": {"uri": str(tmp_path / "local"), "endpoint_url": None}, "registry": {"url": None}}
    )
    local_summary = pipeline(local.resolved())
    ids = {name: a["id"] for name, a in summary["artifacts"].items()}
    assert ids == {name: a["id"] for name, a in local_summary["artifacts"].items()}
    assert {"snapshot", "model", "metrics"} <= set(ids)
    assert summary["outputs"]["manifest"].startswith("runs/")
    assert summary["outputs"]["store"] == f"s3://{BUCKET}/pipeline"
    stored = open_store(settings.storage).read_text(f"runs/{summary['run_id']}/manifest.json")
    assert KEY not in stored and SECRET not in stored  # credentials never reach the manifest
    assert find_run(open_store(settings.storage), "latest").run_id == summary["run_id"]
