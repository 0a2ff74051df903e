"""How often the monitor reports drift when nothing changed, and how often it sees a real shift.

    python benchmarks/drift.py [--data DIR] [--trials 20] [--model ease]

Data: MovieLens 100K from `--data` or $ML100K_DIR (the synthetic data when neither is given). Each trial
(seed s) deals the real timestamps out to the events at random, so the stream is stationary: any two windows
are exchangeable, while hour of day and day of week keep the real logs' session bursts. By time, the first
60% are the champion's training data (`--model`, trained with seed s), the next 20% its test period (its
registered metrics) and the last 20% a new batch; the current window is test period + batch, as `monitor`
sees it. Each scenario changes only the batch, then runs `monitoring.check` with the default settings:

    stationary   the batch as drawn
    long-tail    a fifth of its events moved to the item of opposite popularity rank (as `simulate` does)
    new-users    the users behind a tenth of its events replaced by new ones (same items and ratings)
    ratings      half of its ratings one star lower (at least 1): half a star less on average

Prints, per scenario, the share of trials with drift or decay, with data drift alone, with decay alone, and
how often the context features (hour, day) went beyond their threshold; then, per feature, the median and
largest score over the trials next to its threshold. About 10 s per trial on 2 cores with EASE.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from {{ cookiecutter.package_name }}.data.sources import read_movielens
from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.evaluation import evaluate
from {{ cookiecutter.package_name }}.monitoring import DriftCheck, check
from {{ cookiecutter.package_name }}.settings import ModelConfig, MonitorConfig, SyntheticConfig
from {{ cookiecutter.package_name }}.training import train

METRIC = "ndcg@10"
Scenario = Callable[[pl.DataFrame, pl.DataFrame, np.random.Generator], pl.DataFrame]


def stationary(batch: pl.DataFrame, reference: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    return batch


def long_tail(batch: pl.DataFrame, reference: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """A fifth of the events to the item of opposite popularity rank in the reference."""
    ranked = reference.group_by("item_id").len().sort("len", "item_id").get_column("item_id")
    opposite = dict(zip(ranked.to_list(), ranked.reverse().to_list(), strict=True))
    moved = rng.random(batch.height) < 0.2
    items = [
        opposite.get(item, item) if m else item
        for item, m in zip(batch.get_column("item_id").to_list(), moved, strict=True)
    ]
    shifted = batch.with_columns(pl.Series("item_id", items, dtype=batch.schema["item_id"]))
    return shifted.unique(["user_id", "item_id"], keep="first", maintain_order=True)


def new_users(batch: pl.DataFrame, reference: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """The batch's users, in random order, replaced by new ids until a tenth of its events are theirs."""
    counts = batch.group_by("user_id").len().sort("user_id")
    order = rng.permutation(counts.height)
    users, sizes = counts.get_column("user_id").to_numpy()[order], counts.get_column("len").to_numpy()[order]
    replaced = users[: int(np.searchsorted(np.cumsum(sizes), 0.1 * batch.height)) + 1]
    first_new = int(max(reference.get_column("user_id").max(), batch.get_column("user_id").max())) + 1
    mapping = pl.DataFrame(
        {"user_id": replaced, "new_id": np.arange(first_new, first_new + replaced.size)},
        schema={"user_id": batch.schema["user_id"], "new_id": batch.schema["user_id"]},
    )
    joined = batch.join(mapping, on="user_id", how="left")
    return joined.with_columns(pl.coalesce("new_id", "user_id").alias("user_id")).drop("new_id")


def ratings(batch: pl.DataFrame, reference: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Half of the ratings one star lower, never below one."""
    lower = pl.Series(rng.random(batch.height) < 0.5)
    return batch.with_columns(
        pl.when(lower)
        .then((pl.col("rating") - 1).clip(lower_bound=1))
        .otherwise(pl.col("rating"))
        .alias("rating")
    )


SCENARIOS: dict[str, Scenario] = {
    "stationary": stationary,
    "long-tail": long_tail,
    "new-users": new_users,
    "ratings": ratings,
}


def load_events(data: Path | None) -> tuple[pl.DataFrame, str]:
    if data is not None and data.exists():
        return read_movielens(data), f"MovieLens in {data.name}"
    cfg = SyntheticConfig(n_users=943, n_items=1_682, n_interactions=100_000)
    return generate(cfg, seed=0), "synthetic data (943 users x 1,682 items, 100,000 events)"


def windows(events: pl.DataFrame, seed: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Training data, test period and new batch of one trial: the timestamps dealt out at random."""
    timestamps = np.random.default_rng(seed).permutation(events.get_column("timestamp").to_numpy())
    dealt = events.with_columns(pl.Series("timestamp", timestamps)).sort("timestamp", "user_id", "item_id")
    train_end, test_end = int(dealt.height * 0.6), int(dealt.height * 0.8)
    return dealt.head(train_end), dealt.slice(train_end, test_end - train_end), dealt.slice(test_end)


def run_trial(events: pl.DataFrame, seed: int, model_name: str, cfg: MonitorConfig) -> dict[str, DriftCheck]:
    reference, test, batch = windows(events, seed)
    model = train(ModelConfig(name=model_name), reference, seed=seed)
    registered = evaluate(model, reference, test, [10]).summary
    out = {}
    for name, scenario in SCENARIOS.items():
        changed = scenario(batch, reference, np.random.default_rng([seed, len(out)]))
        out[name] = check(reference, pl.concat([test, changed]), model, registered, METRIC, cfg, seed)
    return out


def rates_table(results: dict[str, list[DriftCheck]]) -> str:
    lines = [
        "| scenario | trials | drift or decay | data drift | decay | context beyond threshold |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, checks in results.items():
        n = len(checks)
        data = sum(_data_drift(c) for c in checks)
        decay = sum(any("fell from" in r for r in c.reasons) for c in checks)
        context = sum(any(c2["drifted"] and not c2["counted"] for c2 in c.event_columns) for c in checks)
        drifted = sum(c.drifted for c in checks)
        lines.append(
            f"| {name} | {n} | {_pct(drifted, n)} | {_pct(data, n)} | {_pct(decay, n)} | {_pct(context, n)} |"
        )
    return "\n".join(lines)


def scores_table(results: dict[str, list[DriftCheck]], cfg: MonitorConfig) -> str:
    """Per feature and scenario: median and largest score over the trials (the calibration evidence)."""
    names = list(results)
    first = results[names[0]][0]
    columns = [c["column"] for c in first.event_columns + first.prediction_columns]
    lines = [
        "| feature | threshold | " + " | ".join(f"{n} (median / max)" for n in names) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in names) + " |",
    ]
    for column in columns:
        cells = []
        for name in names:
            scores = [
                c2["score"]
                for c in results[name]
                for c2 in c.event_columns + c.prediction_columns
                if c2["column"] == column
            ]
            cells.append(f"{statistics.median(scores):.3f} / {max(scores):.3f}")
        label = column if column not in cfg.context_columns else f"{column} (context)"
        lines.append(f"| {label} | {cfg.thresholds.get(column, 'default')} | " + " | ".join(cells) + " |")
    decay = {name: [c.performance["decay"] for c in checks] for name, checks in results.items()}
    cells = [f"{statistics.median(d):.3f} / {max(d):.3f}" for d in decay.values()]
    lines.append(f"| {METRIC} decay | {cfg.max_decay} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _data_drift(result: DriftCheck) -> bool:
    return any("drifted:" in r for r in result.reasons)


def _pct(k: int, n: int) -> str:
    return f"{k / n:.0%} ({k}/{n})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = os.environ.get("ML100K_DIR")
    parser.add_argument("--data", type=Path, default=Path(default_data) if default_data else None)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--model", default="ease")
    args = parser.parse_args()
    events, label = load_events(args.data)
    cfg = MonitorConfig()
    print(f"{label}; {args.trials} trials per scenario; champion {args.model}", flush=True)

    results: dict[str, list[DriftCheck]] = {name: [] for name in SCENARIOS}
    started = time.perf_counter()
    for seed in range(args.trials):
        for name, result in run_trial(events, seed, args.model, cfg).items():
            results[name].append(result)
        print(f"trial {seed + 1}/{args.trials}: {time.perf_counter() - started:.0f} s", flush=True)
    print()
    print(rates_table(results))
    print()
    print(scores_table(results, cfg))


if __name__ == "__main__":
    main()
