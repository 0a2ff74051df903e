"""The run summary: what was built from what, with the metrics, as plain data and as Markdown."""

from __future__ import annotations

from typing import Any

import polars as pl


def describe_interactions(frame: pl.DataFrame) -> dict[str, int | None]:
    """Size of an interactions frame: rows, distinct users and items, time span (Unix seconds)."""
    if frame.height == 0:
        return {"rows": 0, "users": 0, "items": 0, "first_timestamp": 0, "last_timestamp": 0}
    return {
        "rows": frame.height,
        "users": frame.get_column("user_id").n_unique(),
        "items": frame.get_column("item_id").n_unique(),
        # None: the data has no timestamps (its order is the order events arrived in).
        "first_timestamp": int(frame.get_column("timestamp").min()) if "timestamp" in frame.columns else None,
        "last_timestamp": int(frame.get_column("timestamp").max()) if "timestamp" in frame.columns else None,
    }


def render_markdown(summary: dict[str, Any]) -> str:
    """A short human report of one pipeline run (shown in the Prefect UI and written beside the outputs)."""
    data, split, metrics = summary["dataset"], summary["split"], summary["metrics"]
    lines = [
        f"# Pipeline run `{summary['run_id']}`",
        "",
        f"- model: **{summary['model']}**, seed {summary['seed']}, "
        f"config fingerprint `{summary['config_fingerprint'][:12]}`",
        f"- dataset `{data['id'][:12]}` ({data['source']}): {data['rows']:,} interactions, "
        f"{data['users']:,} users, {data['items']:,} items",
        f"- split {split['strategy']}: {split['train_rows']:,} train / {split['test_rows']:,} test events",
        f"- evaluated users: {int(metrics.get('users', 0)):,} (skipped, unseen in training: "
        f"{int(metrics.get('users_skipped', 0)):,})",
        f"- validation: {summary['validation']}",
        "",
        "| metric | value | 95% interval |",
        "| --- | --- | --- |",
    ]
    intervals = summary.get("metric_intervals", {})
    lines += [
        f"| {name} | {value:.4f} | {_interval(intervals.get(name))} |"
        for name, value in metric_items(metrics)
    ]
    lines += ["", "## Artifacts", "", "| name | id | made by | from |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {name} | `{a['id'][:12]}` | {a['task']} | {', '.join(a['parents'])} |"
        for name, a in summary["artifacts"].items()
    ]
    lines += ["", "## Tasks", "", "| task | state | seconds | peak RSS MB |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {name} | {t['state']} | {t['seconds']:.2f} | {_megabytes(t.get('peak_rss_mb'))} |"
        for name, t in summary["tasks"].items()
    ]
    return "\n".join(lines) + "\n"


def metric_items(metrics: dict[str, float]) -> list[tuple[str, float]]:
    """Ranking metrics only (names with '@'), in a stable order."""
    return sorted((name, float(value)) for name, value in metrics.items() if "@" in name)


def _megabytes(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"  # manifests written before memory was recorded lack it


def _interval(bounds: list[float] | None) -> str:
    return f"{bounds[0]:.4f} - {bounds[1]:.4f}" if bounds else ""
