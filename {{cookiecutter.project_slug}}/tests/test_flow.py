"""The pipeline flow against a real (temporary) Prefect server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.artifacts import ArtifactRef, ArtifactStore, open_store
from {{ cookiecutter.package_name }}.cli import load_entrypoint
from {{ cookiecutter.package_name }}.settings import Settings, load_settings

# The flows as a worker loads them: by file path, from the project root.
ARTIFACT_PREFIX = load_entrypoint("flows/ui.py:ARTIFACT_PREFIX")
ValidationFailed = load_entrypoint("flows/pipeline.py:ValidationFailed")
pipeline = load_entrypoint("flows/pipeline.py:pipeline")

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
    kinds = {a["kind"] for a in summary["artifacts"].values()}
    assert kinds == {
        "snapshot",
        "validation",
        "train",
        "test",
        "leakage-check",  # the split's proof that train and test are apart
        "model",
        "metrics",
        "metrics-per-user",
        "metric-intervals",
        "baseline-metrics",  # popularity on the same split, for the promotion judge
        "baseline-metrics-per-user",
    }
    low, high = summary["metric_intervals"]["ndcg@10"]
    assert low <= summary["metrics"]["ndcg@10"] <= high
    for a in summary["artifacts"].values():
        store.get_bytes(ArtifactRef(id=a["id"], uri=a["uri"], kind=a["kind"], size=a["size"]))
    assert summary["artifacts"]["model"]["parents"] == ["train"]
    # The manifest says what the run ran on and how long each task took.
    assert summary["environment"]["torch"]["deterministic_algorithms"] is True
    assert summary["environment"]["code"]["package_sha256"]
    assert any(p.startswith("polars==") for p in summary["environment"]["packages"])
    assert set(summary["tasks"]) == {"inspect-inputs", "ingest", "validate", "split", "train", "evaluate"}
    # Each task's parameters are recorded: config sections as values, artifacts by id.
    train_params = summary["tasks"]["train"]["parameters"]
    assert train_params["train"] == f"artifact:{summary['artifacts']['train']['id']}"
    assert train_params["cfg"] == settings.model.model_dump(mode="json")
    assert train_params["seed"] == settings.seed
    if settings.data.source == "movielens":
        (raw,) = summary["dataset"]["inputs"]
        assert raw["path"].endswith("u.data") and raw["size"] == (Path(raw["path"])).stat().st_size
    stored = json.loads(store.read_text(summary["outputs"]["manifest"]))  # paths inside the store
    assert stored == {k: v for k, v in summary.items() if k not in ("outputs", "promotion", "after_manifest")}
    # Each step's peak memory: tasks in the manifest, record and promotion (done after it) in the result.
    assert all(t["peak_rss_mb"] > 0 for t in stored["tasks"].values())
    assert set(summary["after_manifest"]) == {"record", "promotion"}
    report = store.read_text(summary["outputs"]["report"])
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
    keys = ("report", "metrics", "manifest-file", "report-file", "lineage-file", "model-file")
    keys += ("promotion", "model-card")
    assert set(by_key) == {f"{ARTIFACT_PREFIX}-{k}" for k in keys}
    assert summary["promotion"]["decision"]["reason"] in str(by_key[f"{ARTIFACT_PREFIX}-promotion"].data)
    assert summary["dataset"]["id"][:12] in str(by_key[f"{ARTIFACT_PREFIX}-report"].data)
    assert "ndcg@10" in str(by_key[f"{ARTIFACT_PREFIX}-metrics"].data)
    # Links open from the UI: http, through `serve-files` (see test_ui.py), not file://.
    manifest_link = open_store(settings.storage).link(summary["outputs"]["manifest"])
    assert manifest_link.startswith("http://") and manifest_link in str(
        by_key[f"{ARTIFACT_PREFIX}-manifest-file"].data
    )


def test_rerun_hits_the_cache_for_every_step_and_gives_the_same_ids(small_settings: Settings) -> None:
    first = pipeline(small_settings.resolved())
    second = pipeline(small_settings.resolved())
    ids = lambda s: {name: a["id"] for name, a in s["artifacts"].items()}  # noqa: E731
    assert ids(first) == ids(second)
    assert {t["state"] for name, t in first["tasks"].items() if name != "inspect-inputs"} == {"Completed"}
    # Only the input inspection (it hashes the files, so a changed byte is noticed) runs again.
    assert {name for name, t in second["tasks"].items() if t["state"] != "Cached"} == {"inspect-inputs"}
    assert second["run_id"] != first["run_id"]


def test_changed_input_byte_invalidates_the_cache(tmp_path: Path, small_settings: Settings) -> None:
    from {{ cookiecutter.package_name }}.data.synthetic import generate

    events = tmp_path / "events.csv"
    generate(small_settings.data.synthetic, seed=1).write_csv(events)
    settings = load_settings(
        [DEFAULT], {"data": {"source": "file", "path": str(events)}, "storage": {"uri": str(tmp_path / "s")}}
    )
    first = pipeline(settings.resolved())
    events.write_text(events.read_text().replace("\n1,", "\n2,", 1))  # one user id of one event
    second = pipeline(settings.resolved())
    assert second["tasks"]["ingest"]["state"] == "Completed"
    assert second["dataset"]["inputs"][0]["sha256"] != first["dataset"]["inputs"][0]["sha256"]
    assert second["dataset"]["id"] != first["dataset"]["id"]


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
    # No manifest (the run recorded nothing it made), only its outcome, for `runs` and the dashboard.
    (status,) = (tmp_path / "store" / "runs").rglob("*.json")
    assert status.name == "status.json" and '"failed"' in status.read_text() and "42" in status.read_text()
