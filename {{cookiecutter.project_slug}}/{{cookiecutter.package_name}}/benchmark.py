"""Train and evaluate several models under one named protocol, with intervals, timings and peak memory.

Protocols (names are stable, so figures compare across projects and papers):
- random-80-20: one global random 80/20 holdout of all events (ratings as implicit feedback), seeded;
- temporal-80-20: the pipeline's default, a global time cut-off at the 80% quantile of events;
- leave-last-out: each user's latest event is test;
- user-random-80-20: a seeded 20% of each user's events is test.
Full ranking over all items minus each user's training items; every metric with a 95% bootstrap interval;
each model compared with the first one named by a paired bootstrap test on NDCG@10.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import polars as pl

from .data.split import split
from .evaluation import Evaluation, bootstrap_intervals, evaluate, paired_test
from .resources import PeakMemory
from .settings import ModelConfig, SplitConfig
from .training import train

PROTOCOLS: dict[str, SplitConfig] = {
    "random-80-20": SplitConfig(strategy="random", test_fraction=0.2),
    "temporal-80-20": SplitConfig(strategy="temporal", test_fraction=0.2),
    "leave-last-out": SplitConfig(strategy="leave-last-out"),
    "user-random-80-20": SplitConfig(strategy="user-random", test_fraction=0.2),
}
KS = (10, 20)


def run_benchmark(
    frame: pl.DataFrame, protocol: str, models: Sequence[str], seed: int, model_config: ModelConfig
) -> dict[str, Any]:
    """Every model on the same split; results as plain data (metric values are identical across reruns)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    parts = split(frame, PROTOCOLS[protocol], seed)
    results: dict[str, Any] = {}
    evaluations: dict[str, Evaluation] = {}
    for name in models:
        cfg = model_config.model_copy(update={"name": name})
        with PeakMemory() as memory:
            started = time.perf_counter()
            model = train(cfg, parts.train, seed)
            fitted = time.perf_counter()
            evaluation = evaluate(model, parts.train, parts.test, KS)
            finished = time.perf_counter()
        evaluations[name] = evaluation
        intervals = bootstrap_intervals(evaluation, seed=seed)
        results[name] = {
            "metrics": {
                metric: {"value": value, "low": intervals[metric][0], "high": intervals[metric][1]}
                for metric, value in sorted(evaluation.summary.items())
                if metric in intervals
            },
            "users": evaluation.summary["users"],
            "fit_seconds": round(fitted - started, 3),
            "eval_seconds": round(finished - fitted, 3),
            "peak_memory_mb": round(memory.peak_mb, 1),
            "config": getattr(cfg, name).model_dump(mode="json"),
            "training_curve": model.epochs,
            "seconds_per_epoch": (
                round(sum(model.epoch_seconds) / len(model.epoch_seconds), 3) if model.epoch_seconds else None
            ),
        }
    baseline = models[0]
    comparisons = [
        {"model": name, **asdict(paired_test(evaluations[name], evaluations[baseline], "ndcg@10", seed=seed))}
        for name in models[1:]
    ]
    return {
        "protocol": protocol,
        "seed": seed,
        "interactions": frame.height,
        "train_rows": parts.train.height,
        "test_rows": parts.test.height,
        "models": results,
        "paired_vs_" + baseline: comparisons,
    }


TABLE_COLUMNS = (
    "model",
    "NDCG@10 (95% CI)",
    "Recall@10",
    "MAP@10",
    "Coverage@10",
    "fit s",
    "eval s",
    "peak MB",
)


def table_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per model, as `TABLE_COLUMNS` names them, formatted for reading."""
    rows: list[tuple[str, ...]] = []
    for name, r in results["models"].items():
        m = r["metrics"]
        ndcg = m["ndcg@10"]
        rows.append(
            (
                name,
                f"{ndcg['value']:.4f} ({ndcg['low']:.3f}-{ndcg['high']:.3f})",
                f"{m['recall@10']['value']:.4f}",
                f"{m['map@10']['value']:.4f}",
                f"{m['coverage@10']['value']:.3f}",
                f"{r['fit_seconds']:.2f}",
                f"{r['eval_seconds']:.2f}",
                f"{r['peak_memory_mb']:.0f}",
            )
        )
    return rows


def paired_lines(results: dict[str, Any]) -> list[str]:
    """Each model's paired test against the baseline (the first model named), one line each."""
    baseline = next(iter(results["models"]))
    return [
        f"{t['model']}: NDCG@10 {t['difference']:+.4f} vs {baseline} "
        f"(95% CI {t['interval'][0]:+.4f} to {t['interval'][1]:+.4f}, p={t['p_value']:.4f})"
        for t in results[f"paired_vs_{baseline}"]
    ]


def plot(results: dict[str, Any], prefix: str) -> list[str]:
    """PNG plots beside the JSON: each metric with its interval per model, and training curves."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    models = list(results["models"])
    metrics = ["ndcg@10", "recall@10", "precision@10", "map@10", "mrr@10", "hitrate@10"]
    figure, axes = plt.subplots(1, len(metrics), figsize=(3 * len(metrics), 3.2), constrained_layout=True)
    for axis, metric in zip(axes, metrics, strict=True):
        values = [results["models"][m]["metrics"][metric] for m in models]
        means = [v["value"] for v in values]
        errors = [[v["value"] - v["low"] for v in values], [v["high"] - v["value"] for v in values]]
        axis.bar(models, means, yerr=errors, capsize=4, color="#4C72B0")
        axis.set_title(metric)
        axis.tick_params(axis="x", rotation=45)
    figure.suptitle(f"{results['protocol']}, seed {results['seed']} (95% bootstrap intervals)")
    paths = [f"{prefix}-metrics.png"]
    figure.savefig(paths[0], dpi=110)
    plt.close(figure)

    curves = {m: r["training_curve"] for m, r in results["models"].items() if r["training_curve"]}
    if curves:
        # One panel per model: BPR's log-loss and iALS's weighted squared error live on different scales.
        figure, axes = plt.subplots(
            1, len(curves), figsize=(4 * len(curves), 3.2), constrained_layout=True, squeeze=False
        )
        for axis, (name, curve) in zip(axes[0], curves.items(), strict=True):
            axis.plot([e["epoch"] for e in curve], [e["loss"] for e in curve], label="training loss")
            axis.set_title(name)
            axis.set_xlabel("epoch")
            axis.set_ylabel("training loss")
        paths.append(f"{prefix}-training.png")
        figure.savefig(paths[1], dpi=110)
        plt.close(figure)
    return paths
