"""Run results for tests of what reads them (the registry, the catalog), without running a pipeline.

Every field a `PipelineResult` requires is filled; the ones a test is about are parameters. The artifacts of
runs of the same `content` have the same ids: the same model bytes on the same data.
"""

from __future__ import annotations

from typing import Any

from {{ cookiecutter.package_name }}.artifacts.manifest import PipelineResult

_NAMES = ("snapshot", "validation", "train", "test", "model", "metrics", "metrics_per_user")


def pipeline_result(
    run: str, model: str = "ease", ndcg: float = 0.3, content: str | None = None, dataset: str = "ds"
) -> PipelineResult:
    """The result of run `run` of `model` on dataset `dataset`, scoring `ndcg`."""
    content = content or run
    artifacts = {
        name: {"id": f"{name}-{content}", "uri": f"file:///store/objects/{content}", "kind": "x", "size": 1}
        | {"task": "test", "parents": []}
        for name in _NAMES
    }
    document: dict[str, Any] = {
        "run_id": run,
        "started_at": "2026-12-01T00:00:00+00:00",
        "finished_at": "2026-12-01T00:01:00+00:00",
        "model": model,
        "seed": 42,
        "seeds": {"data": 42, "split": 42, "train": 42},
        "config_fingerprint": "f" * 64,
        "config": {},
        "dataset": {"name": dataset, "id": f"snapshot-{content}", "source": "synthetic", "inputs": []}
        | {"rows": 10, "users": 2, "items": 5},
        "split": {"strategy": "random", "train_rows": 8, "test_rows": 2},
        "validation": "passed",
        "metrics": {"ndcg@10": ndcg},
        "artifacts": artifacts,
        "tasks": {},
        "environment": {
            "python": "3.11",
            "implementation": "CPython",
            "platform": "test",
            "user": "tester",
            "code": {"package_sha256": "c" * 64},
            "packages": [],
            "hardware": {},
            "torch": {
                "version": "2",
                "deterministic_algorithms": True,
                "threads": 1,
                "cudnn_deterministic": True,
            },
        },
        "outputs": {
            "manifest": f"runs/{run}/manifest.json",
            "manifest_id": f"m-{run}",
            "report": f"runs/{run}/report.md",
            "lineage": f"runs/{run}/lineage.mmd",
            "store": "file:///store/",
        },
    }
    return PipelineResult.model_validate(document)
