"""The benchmark command: several models under one protocol, with intervals and plots; reruns repeat."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from {{ cookiecutter.package_name }}.cli import app

pytestmark = pytest.mark.unit

DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def _benchmark(out: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app,
        ["benchmark", "--source", "synthetic", "--out", str(out), "--config", str(DEFAULT), *args],
        env={"COLUMNS": "200"},
    )
    return result.exit_code, result.output


@pytest.mark.e2e
def test_benchmark_writes_results_plots_and_repeats_exactly(tmp_path: Path) -> None:
    args = ("--protocol", "temporal-80-20", "--seed", "3", "--models", "popularity,ease,ials")
    code, out = _benchmark(tmp_path / "a.json", *args)
    assert code == 0, out
    assert "ease" in out and "vs popularity" in out
    results = json.loads((tmp_path / "a.json").read_text())
    assert list(results["models"]) == ["popularity", "ease", "ials"]
    ease = results["models"]["ease"]
    ndcg = ease["metrics"]["ndcg@10"]
    assert ndcg["low"] <= ndcg["value"] <= ndcg["high"]
    assert ease["fit_seconds"] > 0 and ease["eval_seconds"] > 0 and "peak_memory_mb" in ease
    assert {"ndcg@20", "map@10", "mrr@10", "precision@10", "novelty@10", "coverage@10"} <= set(
        ease["metrics"]
    )
    (versus_ease, versus_ials) = results["paired_vs_popularity"]
    assert versus_ease["model"] == "ease" and versus_ease["difference"] > 0 and versus_ease["p_value"] < 0.05
    assert (tmp_path / "a-metrics.png").read_bytes().startswith(b"\x89PNG")

    code, _ = _benchmark(tmp_path / "b.json", *args)
    again = json.loads((tmp_path / "b.json").read_text())
    values = lambda r: {m: r["models"][m]["metrics"] for m in r["models"]}  # noqa: E731
    assert code == 0 and values(again) == values(results)


def test_benchmark_refuses_unknown_protocol_and_models(tmp_path: Path) -> None:
    code, out = _benchmark(tmp_path / "x.json", "--protocol", "nope")
    assert code == 2 and "unknown protocol" in out
    code, out = _benchmark(tmp_path / "x.json", "--models", "ease,magic")
    assert code == 2 and "unknown model(s) ['magic']" in out
