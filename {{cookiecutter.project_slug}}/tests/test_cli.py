"""The command line as a user runs it: a subprocess, exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = "{{ cookiecutter.package_name }}"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path = PROJECT_ROOT, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", PACKAGE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "COLUMNS": "200"},
    )


def test_unknown_option_fails_with_usage_error() -> None:
    result = _cli("run", "--no-such-option")
    assert result.returncode == 2
    assert "No such option" in result.stderr


def test_missing_data_path_is_a_clear_error(tmp_path: Path) -> None:
    result = _cli("run", "--source", "movielens", "--path", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "data path does not exist" in result.stderr and "nowhere" in result.stderr


def test_invalid_setting_names_the_field() -> None:
    result = _cli("config", "--set", "split.test_fraction=2")
    assert result.returncode == 2
    assert "split.test_fraction" in result.stderr


def test_config_shows_resolved_settings_and_fingerprint() -> None:
    result = _cli("config", "--set", "seed=5", "--set", "model.name=popularity")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["settings"]["seed"] == 5 and shown["settings"]["model"]["name"] == "popularity"
    assert len(shown["fingerprint"]) == 64


def test_outside_the_project_without_config_is_a_clear_error(tmp_path: Path) -> None:
    result = _cli("run", cwd=tmp_path)
    assert result.returncode == 2
    assert "configs/default.yaml" in result.stderr


@pytest.mark.e2e
def test_run_twice_second_run_is_all_cache_hits_then_inspect(tmp_path: Path) -> None:
    """Two processes, same data and config: the second recomputes nothing; then the catalog commands."""
    args = [
        "--config", str(PROJECT_ROOT / "configs" / "default.yaml"),
        "--set", "data.synthetic.n_users=300", "--set", "data.synthetic.n_items=200",
        "--set", "data.synthetic.n_interactions=5000", "--set", f"storage.uri={tmp_path / 'artifacts'}",
    ]  # fmt: skip
    first = _cli("run", *args, "--model", "popularity", "--tag", "purpose=test", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "ndcg@10" in first.stdout and "5,000 interactions" in first.stdout and "manifest:" in first.stdout
    assert "tasks: 6 ran, 0 cached" in first.stdout
    second = _cli("run", *args, "--model", "popularity", "--tag", "purpose=test", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "tasks: 1 ran, 5 cached (ingest, validate, split, train, evaluate)" in second.stdout
    assert second.stdout.count("Cached(type=COMPLETED)") + second.stderr.count("Cached(type=COMPLETED)") == 5

    listing = _cli("runs", *args, "--tag", "purpose=test", cwd=tmp_path)
    assert listing.returncode == 0 and listing.stdout.count("purpose=test") == 2, listing.stdout
    lineage = _cli("lineage", "latest", *args, "--out", str(tmp_path / "g.mmd"), cwd=tmp_path)
    assert lineage.returncode == 0, lineage.stderr
    assert "synthetic, seed 42" in lineage.stdout and "model" in lineage.stdout
    assert (tmp_path / "g.mmd").read_text().startswith("flowchart LR")
    compared = _cli("compare", "latest", "latest", *args, cwd=tmp_path)
    assert compared.returncode == 0 and "(same)" in compared.stdout
