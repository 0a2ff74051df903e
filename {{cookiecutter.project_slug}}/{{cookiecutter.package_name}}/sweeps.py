"""Sweeps: turn `sweep.grid` into trial model configs, and rank finished trials.

A trial is the `model` section with one model's parameters replaced by one combination of the grid's values.
Trials come in a fixed order (the grid's entries as listed, then their combinations in order), so a sweep's
table and its winner repeat exactly; equal scores go to the earlier trial.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from .settings import ModelConfig, SweepTrials


def trials(grid: Sequence[SweepTrials], base: ModelConfig) -> list[tuple[str, ModelConfig]]:
    """(label, model config) for every combination of the grid, each config complete and validated.

    An unknown parameter or a value out of range fails here, before any trial runs.
    """
    out = []
    for entry in grid:
        name, keys = entry.model, list(entry.params)
        known = type(getattr(base, name)).model_fields
        if unknown := [k for k in keys if k not in known]:
            raise ValueError(f"sweep.grid: {name} has no parameter {unknown}; known: {sorted(known)}")
        for values in itertools.product(*(entry.params[k] for k in keys)):
            setting = dict(zip(keys, values, strict=True))
            section = {**base.model_dump()[name], **setting}
            cfg = ModelConfig.model_validate({**base.model_dump(), "name": name, name: section})
            out.append((" ".join([name, *(f"{k}={v}" for k, v in setting.items())]), cfg))
    return out


def best(results: Sequence[Mapping[str, Any]], metric: str) -> int:
    """Index of the trial with the highest `metric` (the first of equals)."""
    if not results:
        raise ValueError("no trials to rank")
    missing = [i for i, r in enumerate(results) if metric not in r["metrics"]]
    if missing:
        raise KeyError(
            f"metric {metric!r} missing from trials {missing}; known: {sorted(results[0]['metrics'])}"
        )
    return max(range(len(results)), key=lambda i: (results[i]["metrics"][metric], -i))


def table(results: Sequence[Mapping[str, Any]], metrics: Sequence[str], winner: int) -> list[dict[str, Any]]:
    """One row per trial: its label, each metric with its 95% interval, timings and where it ran."""
    rows = []
    for i, r in enumerate(results):
        row: dict[str, Any] = {"trial": i + 1, "setting": r["label"], "best": "yes" if i == winner else ""}
        for name in metrics:
            low, high = r["intervals"][name]
            row[name] = f"{r['metrics'][name]:.4f} ({low:.4f}-{high:.4f})"
        row["fit s"] = round(r["fit_seconds"], 2)
        row["eval s"] = round(r["eval_seconds"], 2)
        row["worker"] = r["worker"]
        rows.append(row)
    return rows
