"""Bake projects and run their own test suites, as their users would (`python -m pytest` in the project).

The default answers and one bake with different answers on every choice. The baked suite runs an end-to-end
pipeline on MovieLens 100K when it is available (ML100K_DIR, or ../shared/datasets/ml-100k beside this
repository) and on the built-in synthetic data otherwise.
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


def _run_suite(project: Path, ml100k_dir: Path | None) -> None:
    env = {**os.environ, "PYTHONPATH": str(project)}
    env.pop("ML100K_DIR", None)
    if ml100k_dir is not None:
        env["ML100K_DIR"] = str(ml100k_dir)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error::pytest.PytestWarning"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=2700,  # about 15-20 min on 2 quiet cores (the e2e tests start real servers and workers)
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]
    print(result.stdout[-600:])
    if ml100k_dir is not None:
        assert " skipped" not in result.stdout.splitlines()[-1], "ml-100k tests skipped, data present"


@pytest.mark.slow
def test_default_project_suite_passes(cookies, ml100k_dir: Path | None) -> None:
    _run_suite(bake(cookies), ml100k_dir)


@pytest.mark.slow
def test_non_default_project_suite_passes(cookies, ml100k_dir: Path | None) -> None:
    project = bake(cookies, **NON_DEFAULT)
    assert project.name == "movie-night-recs"
    _run_suite(project, ml100k_dir)
