"""Manifests read back: lineage chains, Mermaid graphs, first differences and comparisons (no Prefect)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.artifacts import ArtifactStore
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


def _manifest(run_id: str = "aaaa1111", started: str = "2026-01-01T00:00:00+00:00", **tags: str) -> dict:
    return {
        "run_id": run_id,
        "started_at": started,
        "finished_at": started,
        "tags": tags,
        "seed": 42,
        "config": {"seed": 42, "model": {"name": "ease", "ease": {"l2": 250.0}}},
        "dataset": {
            "id": "s" * 64,
            "rows": 10,
            "inputs": [{"path": "data/u.data", "size": 5, "sha256": "f" * 64}],
        },
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
            "packages": ["polars==2.1.0"],
            "torch": {"version": "2.13.0"},
            "code": {"package_sha256": "c" * 64, "git_commit": None},
            "hardware": {"cpu": "x"},
        },
    }


def test_chain_runs_from_raw_inputs_to_the_asked_artifact() -> None:
    m = _manifest()
    assert lineage_chain(m, "model") == ["inputs", "snapshot", "train", "model"]
    assert lineage_chain(m, "metrics") == ["inputs", "snapshot", "train", "model", "test", "metrics"]
    lines = describe_chain(m, "model")
    assert lines[0].startswith("input     data/u.data sha256 ffffffffffff 5 bytes")
    assert [line.split()[0] for line in lines] == ["input", "snapshot", "train", "model", "metrics"]
    assert "asked" in lines[3]


def test_mermaid_has_every_edge() -> None:
    graph = mermaid(_manifest())
    assert graph.startswith("flowchart LR")
    for edge in ("inputs -->|ingest| snapshot", "train -->|train| model", "test -->|evaluate| metrics"):
        assert edge in graph


def test_first_difference_follows_pipeline_order() -> None:
    a = _manifest()
    assert first_difference(a, copy.deepcopy(a)) is None
    b = copy.deepcopy(a)
    b["artifacts"]["model"]["id"] = "1" * 64
    b["artifacts"]["metrics"]["id"] = "2" * 64
    assert first_difference(a, b).startswith("model (task train)")
    c = copy.deepcopy(a)
    c["dataset"]["inputs"][0]["sha256"] = "0" * 64
    c["artifacts"]["snapshot"]["id"] = "3" * 64
    assert first_difference(a, c).startswith(
        "input data/u.data: sha256 ffffffffffff expected, 000000000000 now"
    )


def test_compare_lists_config_and_metric_differences() -> None:
    a, b = _manifest(), _manifest("bbbb2222")
    b["config"]["model"]["ease"]["l2"] = 10.0
    b["metrics"]["ndcg@10"] = 0.5
    diff = compare(a, b)
    assert diff["config"] == [("model.ease.l2", 250.0, 10.0)]
    assert diff["metrics"] == [("ndcg@10", 0.4, 0.5)]
    assert diff["data"] == [] and diff["environment"] == []


def test_catalog_reads_finds_and_filters_runs(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    with pytest.raises(RunNotFound, match="no runs"):
        find_run(store, "latest")
    write_manifest(store, _manifest("aaaa1111", "2026-01-01T00:00:00+00:00", purpose="test"))
    write_manifest(store, _manifest("bbbb2222", "2026-01-02T00:00:00+00:00"))
    assert [m["run_id"] for m in list_runs(store)] == ["aaaa1111", "bbbb2222"]
    assert [m["run_id"] for m in list_runs(store, {"purpose": "test"})] == ["aaaa1111"]
    assert find_run(store, "latest")["run_id"] == "bbbb2222"
    assert find_run(store, "aaaa")["run_id"] == "aaaa1111"
    manifest, name = find_artifact(store, _entry("test", "split", [])["id"][:10])
    assert (manifest["run_id"], name) == ("bbbb2222", "test")
    with pytest.raises(RunNotFound, match="no run or artifact"):
        find_artifact(store, "zzzzzzzz")
