"""How long the dashboard takes to build, and how big the page is, for many runs.

    python benchmarks/dashboard.py [--runs 100] [--datasets 2] [--checks 50]

Fabricates a store and a SQLite registry in a temporary folder the way runs leave them: per run a manifest
with this machine's environment, every metric at K 10 and 20 with its interval, the six pipeline steps with
wall time, peak memory and cache state, and a completed status naming its registry version (one run in 20
failed at promotion); each run's model registered, every fifth promoted with the judge's kind of reason, one
rollback per dataset; `--checks` monitor checks per dataset with nine features. Then builds the page as
`dashboard` does (collect + render, the best of three) and prints the time and the page's size.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from {{ cookiecutter.package_name }} import environment
from {{ cookiecutter.package_name }}.artifacts import ArtifactStore
from {{ cookiecutter.package_name }}.artifacts.manifest import PipelineResult
from {{ cookiecutter.package_name }}.artifacts.registry import CHAMPION, Registry
from {{ cookiecutter.package_name }}.artifacts.runs import COMPLETED, FAILED, update_status, write_manifest
from {{ cookiecutter.package_name }}.dashboard import CHECKS, collect
from {{ cookiecutter.package_name }}.dashboard_page import beside_page, render_page
from {{ cookiecutter.package_name }}.monitoring import EVENT_CATEGORICAL, EVENT_NUMERIC, PREDICTION_NUMERIC

STEPS = ("inspect-inputs", "ingest", "validate", "split", "train", "evaluate")
METRICS = ("ndcg", "recall", "hitrate", "precision", "map", "mrr", "novelty", "coverage")
START = datetime(2026, 9, 1, tzinfo=UTC)


def fabricate(
    root: Path, runs: int, datasets: int, checks: int, rng: random.Random
) -> tuple[ArtifactStore, Registry]:
    store = ArtifactStore(str(root / "artifacts"))
    registry = Registry(f"sqlite:///{root / 'registry.sqlite'}", store)
    env = environment.capture(environment.torch_facts())
    for i in range(runs):
        dataset = f"dataset-{i % datasets}"
        at = START + timedelta(hours=12 * i)
        result = _result(f"run-{i:04d}", dataset, at, env, rng)
        write_manifest(store, result)
        version = registry.register(result, actor=f"run {result.run_id}").version
        failed = i % 20 == 19
        update_status(
            store,
            result.run_id,
            status=FAILED if failed else COMPLETED,
            **({"step": "promotion", "reason": "RegistryError: the champion moved"} if failed else {}),
            registry={"version": version, "dataset": dataset},
        )
        if i % 5 < datasets and not failed:
            gain = rng.uniform(0.001, 0.02)
            reason = f"ndcg@10 gain +{gain:.4f}, 95% interval above the margin; guards within limits"
            registry.promote(version, actor=f"run {result.run_id}", reason=reason)
    for d in range(datasets):
        registry.rollback(actor="on-call", reason="stale recommendations reported", dataset=f"dataset-{d}")
        for c in range(checks):
            _check(store, f"dataset-{d}", START + timedelta(hours=24 * c, minutes=d), rng)
    return store, registry


def _result(run_id: str, dataset: str, at: datetime, env: dict, rng: random.Random) -> PipelineResult:
    metrics, intervals = {}, {}
    for k in (10, 20):
        for name in METRICS:
            value = rng.uniform(5, 9) if name == "novelty" else rng.uniform(0.05, 0.45)
            metrics[f"{name}@{k}"] = value
            if name != "coverage":
                intervals[f"{name}@{k}"] = [value * 0.93, value * 1.07]
    metrics |= {"users": 940.0, "users_skipped": 3.0}
    entry = {"uri": "objects/00/x", "kind": "x", "size": 1, "task": "t", "parents": []}
    artifacts = {
        name: {**entry, "id": f"{rng.getrandbits(256):064x}"}
        for name in ("snapshot", "validation", "train", "test", "model", "metrics", "metrics_per_user")
    }
    cached = rng.random() < 0.3
    tasks = {
        step: {
            "state": "Cached" if cached and step != "inspect-inputs" else "Completed",
            "seconds": round(rng.uniform(0.1, 30), 3),
            "peak_rss_mb": round(rng.uniform(300, 2500), 1),
            "parameters": {"seed": 42},
        }
        for step in STEPS
    }
    finished = at + timedelta(minutes=rng.randint(2, 40))
    return PipelineResult.model_validate(
        {
            "run_id": run_id,
            "flow_run_name": f"pipeline ease on {dataset}",
            "started_at": at.isoformat(timespec="seconds"),
            "finished_at": finished.isoformat(timespec="seconds"),
            "model": rng.choice(("ease", "bpr", "popularity")),
            "seed": 42,
            "seeds": {"data": 42, "split": 42, "train": 42},
            "config_fingerprint": f"{rng.getrandbits(256):064x}",
            "config": {"model": {"name": "ease"}, "evaluation": {"primary_metric": "ndcg@10"}},
            "dataset": {
                "name": dataset,
                "id": artifacts["snapshot"]["id"],
                "source": "movielens",
                "inputs": [],
                "rows": 100_000,
                "users": 943,
                "items": 1682,
            },
            "split": {"strategy": "temporal", "train_rows": 80_000, "test_rows": 20_000},
            "validation": "passed",
            "metrics": metrics,
            "metric_intervals": intervals,
            "artifacts": artifacts,
            "tasks": tasks,
            "environment": env,
            "outputs": {
                "manifest": f"runs/{run_id}/manifest.json",
                "manifest_id": artifacts["metrics"]["id"],
                "report": f"runs/{run_id}/report.md",
                "lineage": f"runs/{run_id}/lineage.mmd",
                "store": "file:///store/",
            },
        }
    )


def _check(store: ArtifactStore, dataset: str, at: datetime, rng: random.Random) -> None:
    def column(name: str) -> dict:
        return {"column": name, "score": rng.uniform(0, 0.2), "threshold": 0.1, "counted": True}

    outcome = {
        "checked_at": at.isoformat(timespec="seconds"),
        "dataset": dataset,
        "champion": 1,
        "drifted": False,
        "event_columns": [column(c) for c in (*EVENT_NUMERIC, *EVENT_CATEGORICAL)],
        "prediction_columns": [column(c) for c in PREDICTION_NUMERIC],
    }
    store.write_text(f"{CHECKS}/{at:%Y%m%dT%H%M%S}-{dataset}.json", json.dumps(outcome))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--datasets", type=int, default=2)
    parser.add_argument("--checks", type=int, default=50, help="monitor checks per dataset")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store, registry = fabricate(Path(tmp), args.runs, args.datasets, args.checks, random.Random(0))
        timings, page = [], ""
        for _ in range(3):
            started = time.perf_counter()
            board = collect(store, registry.versions(), registry.history(CHAMPION), "ndcg@10")
            collected = time.perf_counter()
            page = render_page(board, beside_page)
            timings.append((time.perf_counter() - started, collected - started))
        total, reading = min(timings)
        print(
            f"{args.runs} runs, {args.datasets} datasets, {args.checks} checks each: built in {total:.2f} s "
            f"({reading:.2f} s reading the store and registry), page {len(page.encode()) / 1024:.0f} KiB"
        )


if __name__ == "__main__":
    main()
