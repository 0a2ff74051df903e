"""Bake projects and run their own test suites, as their users would (`make test` in the project: pytest in
parallel, `-n 4 --dist loadgroup`; here with the template's virtualenv, which holds the same pinned set, and
with fewer worker processes each, since the two suites run at once: see DEFAULT_WORKERS).

The default answers run the whole suite, every tier (unit, flow, e2e, postgres; the project's README,
"Tests"). The bake with different answers on every choice runs the tiers those answers can change, unit and
flow, and not e2e or postgres:

- unit: every module of the package under another name (movie_night_recs), and its configs/default.yaml
  (test_settings: the file matches the code's defaults except the answers, here popularity and S3);
- flow: the tests that run flows with the project's settings, and so with its default model where they do
  not name one (test_ingest_flow, test_integrity, test_ui's retrain, whose run names hold the model), and the
  store on S3 (test_s3, against moto);
- e2e and postgres test processes, servers, workers and PostgreSQL, which no answer changes: they name their
  model and store (`--model`, `storage.uri`), and the two that train the default model (test_deployments'
  worker and event tests) run the same flows the flow tier runs with it.

The suites run an end-to-end pipeline on MovieLens 100K when it is available (ML100K_DIR, or
../shared/datasets/ml-100k beside this repository) and on the built-in synthetic data otherwise; where it is
available, no test of the tiers run may skip for want of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import bake

NON_DEFAULT = {
    "project_name": "Movie Night Recs",
    "author": "Ada Lovelace",
    "python_version": "3.12",
    "default_model": "popularity",
    "artifact_storage": "s3",
    "license": "none",
    "ci": "none",
}
# The two suites run side by side (`make test`: three template workers, the third for the quick tests), so
# together they are given three worker processes for 2 cores. The work is CPU on 2 cores, and each worker
# process costs its imports, a Prefect server and their share of the contention, so fewer run faster.
# Measured, `make test` (full matrix): 4 + 2 workers 865 s and 24.9 CPU-min (two template workers then);
# 3 + 1 813 s and 22.5 CPU-min; this round, with the session servers' databases copied, 3 + 1 670 s and
# 17.7 CPU-min, 2 + 1 604-667 s and 15.6-17.3 CPU-min in three runs (CPU of the processes it waits for);
# then, with torch's threads sleeping while they wait, 2 + 1 545-562 s and 13.6-14.0 CPU-min; 572 s and
# 14.2 CPU-min with 448 project tests, 580 s and 14.6 CPU-min with 450.
DEFAULT_WORKERS, NON_DEFAULT_WORKERS = 2, 1
ML100K_SKIP = "MovieLens 100K not available"  # the reason the project's ml100k fixture skips with


def _run_suite(project: Path, ml100k_dir: Path | None, workers: int, *selection: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(project)}
    env.pop("ML100K_DIR", None)
    if ml100k_dir is not None:
        env["ML100K_DIR"] = str(ml100k_dir)
    pytest_ = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    parallel = ["-n", str(workers), "--dist", "loadgroup"]
    result = subprocess.run(
        [*pytest_, "-W", "error::pytest.PytestWarning", *parallel, *selection],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=2700,  # generous: a loaded machine takes several times what 2 quiet cores do
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]
    print(result.stdout[-600:])
    if ml100k_dir is not None:  # `-ra` lists every skip with its reason
        assert ML100K_SKIP not in result.stdout, "ml-100k tests skipped, data present"


@pytest.mark.slow
def test_default_project_suite_passes(cookies, ml100k_dir: Path | None) -> None:
    _run_suite(bake(cookies), ml100k_dir, DEFAULT_WORKERS)


@pytest.mark.slow
def test_non_default_project_suite_passes(cookies, ml100k_dir: Path | None) -> None:
    project = bake(cookies, **NON_DEFAULT)
    assert project.name == "movie-night-recs"
    _run_suite(project, ml100k_dir, NON_DEFAULT_WORKERS, "-m", "unit or flow")
