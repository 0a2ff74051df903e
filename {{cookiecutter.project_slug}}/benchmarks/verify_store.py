"""How long `verify` takes on a store of many runs.

    python benchmarks/verify_store.py [--runs 100] [--model ease] [--interactions 100000] [--store DIR]

Fills a store with `--runs` pipeline runs (seeds 0, 1, ...: each run its own data, split, model and metrics,
registered and judged as `run` does), unless `--store` already holds them, then times `verify_store` over it
three times and prints the store's size and the median. Building 100 runs of the default data takes a few
minutes; `--store DIR` keeps the store for another measurement.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from {{ cookiecutter.package_name }}.artifacts import open_store
from {{ cookiecutter.package_name }}.artifacts.verify import existing_registry, verify_store
from {{ cookiecutter.package_name }}.cli import _run_pipeline  # the same in-process run (and Prefect set-up) as `run`
from {{ cookiecutter.package_name }}.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--model", default=None, help="Model of every run (default: the config's)")
    parser.add_argument("--interactions", type=int, default=None, help="Synthetic interactions per run")
    parser.add_argument("--store", type=Path, help="Keep the store here (runs already in it are reused)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="verify-") as tmp:
        store_dir = (args.store or Path(tmp) / "artifacts").resolve()
        settings = _settings(store_dir, 0, args.model, args.interactions)
        store = open_store(settings.storage)
        for seed in range(len(store.list("runs")), args.runs):
            started = time.perf_counter()
            state = _run_pipeline(_settings(store_dir, seed, args.model, args.interactions))
            state.result()  # raises the flow's error
            print(f"run {seed + 1}/{args.runs}: {time.perf_counter() - started:.1f} s", flush=True)
        times = []
        for _ in range(3):
            report = verify_store(store, existing_registry(settings.registry, settings.storage))
            times.append(report.seconds)
        size = sum(p.stat().st_size for p in store_dir.rglob("*") if p.is_file())
        print(f"store {store_dir}: {size / 1e6:,.0f} MB")
        print(report.summary())
        for problem in report.problems:
            print(problem)
        print(f"verify: median {statistics.median(times):.2f} s of {', '.join(f'{t:.2f}' for t in times)}")


def _settings(store: Path, seed: int, model: str | None, interactions: int | None) -> Settings:
    overrides: dict = {"seed": seed, "storage": {"uri": str(store)}, "tags": {"benchmark": "verify"}}
    if model:
        overrides["model"] = {"name": model}
    if interactions:
        overrides["data"] = {"synthetic": {"n_interactions": interactions}}
    return load_settings([ROOT / "configs" / "default.yaml"], overrides)


if __name__ == "__main__":
    main()
