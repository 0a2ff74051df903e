"""Manifests read back: lineage chains, Mermaid graphs, first differences and comparisons (no Prefect)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.artifacts import ArtifactStore
from {{ cookiecutter.package_name }}.artifacts.manifest import ManifestUnreadable, RunManifest, read_manifest
from {{ cookiecutter.package_name }}.artifacts.runs import (
    RunNotFound,
    compare,
    describe_chain,
    find_artifact,
    find_run,
    first_difference,
    lineage_chain,
    list_runs,
    mermaid,
    write_manifest,
)

pytestmark = pytest.mark.unit


def _entry(name: str, task: str, parents: list[str]) -> dict:
    digest = (name * 64)[:64].encode().hex()[:64]
    return {
        "id": digest,
        "uri": f"file:///x/{digest}",
        "kind": name,
        "size": 1,
        "task": task,
        "parents": parents,
    }


def _document(run_id: str = "aaaa1111", started: str = "2026-01-01T00:00:00+00:00", **tags: str) -> dict:
    """A stored manifest (JSON) of a run of EASE on one input file."""
    return {
        "format": 2,
        "run_id": run_id,
        "started_at": started,
        "finished_at": started,
        "tags": tags,
        "model": "ease",
        "seed": 42,
        "seeds": {"data": 42, "split": 42, "train": 42},
        "config_fingerprint": "9" * 64,
        "config": {"seed": 42, "model": {"name": "ease", "ease": {"l2": 250.0}}},
        "dataset": {
            "name": "u",
            "id": "s" * 64,
            "source": "movielens",
            "rows": 10,
            "users": 2,
            "items": 3,
            "inputs": [{"path": "data/u.data", "size": 5, "sha256": "f" * 64}],
        },
        "split": {"strategy": "random", "train_rows": 8, "test_rows": 2},
        "validation": "passed",
        "metrics": {"ndcg@10": 0.4},
        "artifacts": {
            "snapshot": _entry("snapshot", "ingest", ["inputs"]),
            "train": _entry("train", "split", ["snapshot"]),
            "test": _entry("test", "split", ["snapshot"]),
            "model": _entry("model", "train", ["train"]),
            "metrics": _entry("metrics", "evaluate", ["model", "train", "test"]),
        },
        "tasks": {},
        "environment": {
            "python": "3.11.7",
            "implementation": "CPython",
            "platform": "Linux",
            "user": "tester",
            "packages": ["polars==2.1.0"],
            "torch": {
                "version": "2.13.0",
                "deterministic_algorithms": True,
                "threads": 2,
                "cudnn_deterministic": True,
            },
            "code": {"package_sha256": "c" * 64, "git_commit": None},
            "hardware": {"cpu": "x"},
        },
    }


def _manifest(
    run_id: str = "aaaa1111", started: str = "2026-01-01T00:00:00+00:00", **tags: str
) -> RunManifest:
    return RunManifest.model_validate(_document(run_id, started, **tags))


def test_chain_runs_from_raw_inputs_to_the_asked_artifact() -> None:
    m = _manifest()
    assert lineage_chain(m, "model") == ["inputs", "snapshot", "train", "model"]
    assert lineage_chain(m, "metrics") == ["inputs", "snapshot", "train", "model", "test", "metrics"]
    lines = describe_chain(m, "model")
    assert lines[0].startswith("input     data/u.data sha256 ffffffffffff 5 bytes")
    steps = [line.split()[0] for line in lines]
    assert steps == ["input", "snapshot", "train", "model", "metrics", "leakage"]
    assert "asked" in lines[3]
    # A manifest from before the split's leakage check says so where the chain passes the split.
    assert lines[-1] == "leakage   not checked (a run from before the split's leakage check)"


def test_mermaid_has_every_edge() -> None:
    graph = mermaid(_manifest())
    assert graph.startswith("flowchart LR")
    for edge in ("inputs -->|ingest| snapshot", "train -->|train| model", "test -->|evaluate| metrics"):
        assert edge in graph


def test_first_difference_follows_pipeline_order() -> None:
    a = _manifest()
    assert first_difference(a, _manifest()) is None
    b = _document()
    b["artifacts"]["model"]["id"] = "1" * 64
    b["artifacts"]["metrics"]["id"] = "2" * 64
    assert first_difference(a, RunManifest.model_validate(b)).startswith("model (task train)")
    c = _document()
    c["dataset"]["inputs"][0]["sha256"] = "0" * 64
    c["artifacts"]["snapshot"]["id"] = "3" * 64
    assert first_difference(a, RunManifest.model_validate(c)).startswith(
        "input data/u.data: sha256 ffffffffffff expected, 000000000000 now"
    )


def test_compare_lists_config_and_metric_differences() -> None:
    a, b = _manifest(), _document("bbbb2222")
    b["config"]["model"]["ease"]["l2"] = 10.0
    b["metrics"]["ndcg@10"] = 0.5
    diff = compare(a, RunManifest.model_validate(b))
    assert diff["config"] == [("model.ease.l2", 250.0, 10.0)]
    assert diff["metrics"] == [("ndcg@10", 0.4, 0.5)]
    assert diff["data"] == [] and diff["environment"] == []


def test_catalog_reads_finds_and_filters_runs(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    with pytest.raises(RunNotFound, match="no runs"):
        find_run(store, "latest")
    write_manifest(store, _manifest("aaaa1111", "2026-01-01T00:00:00+00:00", purpose="test"))
    write_manifest(store, _manifest("bbbb2222", "2026-01-02T00:00:00+00:00"))
    assert [m.run_id for m in list_runs(store)] == ["aaaa1111", "bbbb2222"]
    assert [m.run_id for m in list_runs(store, {"purpose": "test"})] == ["aaaa1111"]
    assert find_run(store, "latest").run_id == "bbbb2222"
    assert find_run(store, "aaaa").run_id == "aaaa1111"
    manifest, name = find_artifact(store, _entry("test", "split", [])["id"][:10])
    assert (manifest.run_id, name) == ("bbbb2222", "test")
    with pytest.raises(RunNotFound, match="no run or artifact"):
        find_artifact(store, "zzzzzzzz")


def test_a_manifest_of_the_first_format_is_read_through_its_upgrade(tmp_path: Path) -> None:
    """Format 1 had no dataset name: reading it names the dataset as its own data settings do."""
    old = _document("cccc3333")
    old.pop("format")
    del old["dataset"]["name"]
    old["config"]["data"] = {"source": "movielens", "path": "/data/ml-100k"}
    upgraded = read_manifest(old)
    assert upgraded.format == 2 and upgraded.dataset.name == "ml-100k"
    store = ArtifactStore(str(tmp_path))
    store.write_text("runs/cccc3333/manifest.json", json.dumps(old))
    assert find_run(store, "cccc").dataset.name == "ml-100k"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ([1, 2], "is a JSON list"),
        ({"format": 99}, "has format 99"),
        ({"run_id": "x"}, "is not a run manifest"),
    ],
)
def test_what_is_not_a_manifest_is_refused_with_the_reason(document: object, reason: str) -> None:
    with pytest.raises(ManifestUnreadable, match=reason):
        read_manifest(document)
