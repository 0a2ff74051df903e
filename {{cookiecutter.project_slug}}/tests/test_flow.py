"""The pipeline flow against a real (temporary) Prefect server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.artifacts import ArtifactRef, ArtifactStore
from {{ cookiecutter.package_name }}.flows.pipeline import ARTIFACT_PREFIX, ValidationFailed, pipeline
from {{ cookiecutter.package_name }}.settings import Settings, load_settings

pytestmark = pytest.mark.usefixtures("prefect_server")
DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def _real_or_synthetic(tmp_path: Path) -> Settings:
    """ml-100k when it is available (the real end-to-end case), otherwise the built-in synthetic data."""
    overrides: dict = {"storage": {"uri": str(tmp_path / "artifacts")}, "model": {"name": "ease"}}
    ml100k = Path(os.environ.get("ML100K_DIR", "data/ml-100k"))
    if (ml100k / "u.data").is_file():
        overrides["data"] = {"source": "movielens", "path": str(ml100k)}
    return load_settings([DEFAULT], overrides)


def test_pipeline_runs_end_to_end_and_reports(tmp_path: Path) -> None:
    settings = _real_or_synthetic(tmp_path)
    state = pipeline(settings.resolved(), return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()

    assert summary["config_fingerprint"] == settings.fingerprint()
    assert summary["dataset"]["rows"] == 100_000  # ml-100k, and the synthetic default size
    assert summary["split"]["train_rows"] + summary["split"]["test_rows"] == summary["dataset"]["rows"]
    for name in ("ndcg@10", "recall@10", "hitrate@10", "ndcg@20"):
        assert 0.0 < summary["metrics"][name] <= 1.0, name
    # Every artifact the run names exists in the store with the bytes its id promises.
    store = ArtifactStore(settings.storage.uri)
    kinds = {a["kind"] for a in summary["artifacts"]}
    assert kinds == {"snapshot", "validation", "train", "test", "model", "metrics", "metrics-per-user"}
    for a in summary["artifacts"]:
        store.get_bytes(ArtifactRef(id=a["id"], uri=a["uri"], kind=a["kind"], size=a["size"]))
    report = Path(summary["outputs"]["report"].removeprefix("file://")).read_text()
    assert summary["dataset"]["id"][:12] in report and "ndcg@10" in report

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        TaskRunFilter,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        published = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            ),
            # Prefect 3.8's sync client sends unset arguments as null and its server rejects that: pass all.
            flow_run_filter=FlowRunFilter(),
            task_run_filter=TaskRunFilter(),
            sort=ArtifactSort.KEY_ASC,
            limit=50,
            offset=0,
        )
    by_key = {a.key: a for a in published}
    assert set(by_key) == {f"{ARTIFACT_PREFIX}-report", f"{ARTIFACT_PREFIX}-metrics"}
    assert summary["dataset"]["id"][:12] in str(by_key[f"{ARTIFACT_PREFIX}-report"].data)
    assert "ndcg@10" in str(by_key[f"{ARTIFACT_PREFIX}-metrics"].data)


def test_rerun_gives_the_same_artifact_ids(tmp_path: Path, small_settings: Settings) -> None:
    first = pipeline(small_settings.resolved())
    second = pipeline(small_settings.resolved())
    ids = lambda s: {a["name"]: a["id"] for a in s["artifacts"]}  # noqa: E731
    assert ids(first) == ids(second)


def test_validation_gate_stops_the_flow_before_training(tmp_path: Path) -> None:
    batch = tmp_path / "events.csv"
    batch.write_text(
        "user_id,item_id,timestamp,rating\n1,2,1700000000,4\n2,3,1700000100,42\n3,1,1700000200,5\n"
    )
    settings = load_settings(
        [DEFAULT],
        {"data": {"source": "file", "path": str(batch)}, "storage": {"uri": str(tmp_path / "store")}},
    )
    state = pipeline(settings.resolved(), return_state=True)
    assert state.is_failed()
    with pytest.raises(ValidationFailed, match=r"rating.*42"):
        state.result()
    stored = sorted(p.suffix for p in (tmp_path / "store" / "objects").rglob("*") if p.is_file())
    assert stored == [".json", ".parquet"]  # the snapshot and its validation result; no split, no model
    assert not (tmp_path / "store" / "runs").exists()
