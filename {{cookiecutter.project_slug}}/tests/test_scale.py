"""What makes the pipeline fit 10M interactions: bounded-memory evaluation, per-task peak memory, the
benchmark script (at a tiny size here; benchmarks/scale.py runs the real sizes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from {{ cookiecutter.package_name }} import evaluation, resources
from {{ cookiecutter.package_name }}.data.split import split
from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.models import build_model
from {{ cookiecutter.package_name }}.resources import PeakMemory
from {{ cookiecutter.package_name }}.settings import ModelConfig, SplitConfig, SyntheticConfig

pytestmark = pytest.mark.unit

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def evaluated() -> tuple[evaluation.Evaluation, object, object, object]:
    frame = generate(SyntheticConfig(n_users=300, n_items=150, n_interactions=6_000), seed=3)
    parts = split(frame, SplitConfig(), seed=3)
    model = build_model(ModelConfig(name="popularity")).fit(parts.train, seed=3)
    return evaluation.evaluate(model, parts.train, parts.test, [5, 10]), model, parts.train, parts.test


def test_user_batches_do_not_change_metrics(evaluated) -> None:
    whole, model, train, test = evaluated
    batched = evaluation.evaluate(model, train, test, [5, 10], batch_size=7)
    assert batched.summary == whole.summary
    assert batched.per_user.equals(whole.per_user)
    assert np.array_equal(batched.top_items, whole.top_items)


def test_bootstrap_in_blocks_matches_one_block(evaluated, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = evaluated[0]
    one_block = evaluation.bootstrap_intervals(whole, n_resamples=200, seed=1)
    monkeypatch.setattr(evaluation, "_RESAMPLE_CELLS", whole.per_user.height * 3)  # 67 blocks of 3
    blocked = evaluation.bootstrap_intervals(whole, n_resamples=200, seed=1)
    assert blocked.keys() == one_block.keys()
    for name, (low, high) in one_block.items():
        assert blocked[name] == pytest.approx((low, high), abs=1e-12), name  # only summation order differs


def test_coverage_bootstrap_counts_like_the_dense_matrix(evaluated) -> None:
    whole = evaluated[0]
    top = whole.top_items[:, :5]
    weights = next(evaluation._resample_weights(top.shape[0], 50, seed=2))
    dense = torch.zeros(top.shape[0], whole.n_items, dtype=torch.float64)
    rows, slots = np.nonzero(top >= 0)
    dense[rows, top[rows, slots]] = 1.0
    expected = ((torch.from_numpy(weights) @ dense) > 0).to(torch.float64).mean(1)
    sparse = (evaluation._covered_by(top, whole.n_items) @ torch.from_numpy(weights.T.copy())) > 0
    assert torch.equal(sparse.to(torch.float64).mean(0), expected)


exact_mark = pytest.mark.skipif(
    not resources._exact(), reason="no resettable high-water mark here (Linux's /proc/self/clear_refs)"
)


@exact_mark
def test_peak_memory_sees_an_allocation_freed_at_once() -> None:
    with PeakMemory() as memory:
        block = np.ones(64 * 2**20 // 8)  # 64 MB, touched
        del block
    assert memory.peak_mb >= 48
    assert memory.peak_rss_mb >= memory.peak_mb


@exact_mark
def test_peak_memory_blocks_that_overlap_keep_their_own_peaks() -> None:
    with PeakMemory() as outer:
        block = np.ones(64 * 2**20 // 8)
        del block
        with PeakMemory() as inner:  # resets the process's mark: the outer block must keep what it saw
            small = np.ones(2**20 // 8)
            del small
    assert outer.peak_mb >= 48
    assert inner.peak_mb < 16


def test_peak_memory_sampled_where_the_kernel_keeps_no_mark(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "_exact", lambda: False)
    with PeakMemory() as memory:
        block = np.ones(64 * 2**20 // 8)
        time.sleep(0.3)  # held for many sampling intervals, as the pipeline's steps hold their arrays
        del block
    assert memory.peak_mb >= 48


@pytest.mark.usefixtures("prefect_server")
def test_scale_script_prints_the_table_at_a_tiny_size(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    # The script's runs use this session's Prefect server instead of each starting a temporary one.
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    out = tmp_path / "scale.json"
    script = PROJECT_ROOT / "benchmarks" / "scale.py"
    done = subprocess.run(
        [sys.executable, str(script), "--sizes", "10k", "--epochs", "1", "--challenger", "--json", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3_000:]
    assert "10k: 10,000 interactions, 200 users" in done.stdout
    for step in ("ingest", "validate", "split", "train", "evaluate", "record", "promotion", "**total**"):
        assert f"| {step} |" in done.stdout, step
    result = json.loads(out.read_text())["10k"]
    # Every task of the manifest carries its peak memory; record and promotion come from the flow's result,
    # promotion's parts from the registry. The second run (--challenger) reports the same steps.
    once = {
        "inspect-inputs",
        "ingest",
        "validate",
        "split",
        "train",
        "evaluate",
        "record",
        "promotion",
        "promotion: refit for serving",
        "promotion: register and judge",
    }
    assert set(result["steps"]) == once | {f"{step} (2nd run)" for step in once}
    assert "| evaluate (2nd run) |" in done.stdout
    assert all(step["peak_rss_mb"] > 0 for step in result["steps"].values())
    assert result["process_peak_rss_mb"] >= max(step["peak_rss_mb"] for step in result["steps"].values())
