"""The run summary: what was built from what, with the metrics, as plain data and as Markdown."""

from __future__ import annotations

import polars as pl

from .artifacts.manifest import RunManifest


def describe_interactions(frame: pl.DataFrame) -> dict[str, int | None]:
    """Size of an interactions frame: rows, distinct users and items, time span (Unix seconds)."""
    if frame.height == 0:
        return {"rows": 0, "users": 0, "items": 0, "first_timestamp": 0, "last_timestamp": 0}
    # None: the data has no timestamps (its order is the order events arrived in).
    times = frame.get_column("timestamp") if "timestamp" in frame.columns else None
    return {
        "rows": frame.height,
        "users": frame.get_column("user_id").n_unique(),
        "items": frame.get_column("item_id").n_unique(),
        "first_timestamp": None if times is None else int(frame.select(pl.col("timestamp").min()).item()),
        "last_timestamp": None if times is None else int(frame.select(pl.col("timestamp").max()).item()),
    }


# Fewer evaluable test users than this, or more than half of them skipped: the metrics are not worth much.
FEW_USERS = 100


def few_users_note(evaluable: int, test_users: int, strategy: str, has_time: bool) -> str | None:
    """A warning when the metrics rest on few users, with a split that would fit; None when they do not."""
    skipped = test_users - evaluable
    if evaluable >= FEW_USERS and skipped <= test_users / 2:
        return None
    fit = (
        "split.strategy=user-random (each user's events split 80/20) or leave-last-out"
        if has_time
        else "split.strategy=user-random (each user's events split 80/20)"
    )
    if strategy in ("user-random", "leave-last-out"):
        fit = "more data, or split.k_core=5 to keep users with enough events"
    return (
        f"only {evaluable:,} test users can be evaluated ({skipped:,} of {test_users:,} have no training "
        f"events under split {strategy}): metrics are uncertain; try {fit}"
    )


def metrics_caveat(manifest: RunManifest) -> str | None:
    """`few_users_note` for a run: None when its metrics rest on enough users."""
    metrics = manifest.metrics
    evaluable, skipped = int(metrics.get("users", 0)), int(metrics.get("users_skipped", 0))
    strategy = manifest.split.strategy.split(" ")[0]
    return few_users_note(
        evaluable, evaluable + skipped, strategy, manifest.dataset.first_timestamp is not None
    )


def render_markdown(manifest: RunManifest) -> str:
    """A short human report of one pipeline run (shown in the Prefect UI and written beside the outputs)."""
    data, split, metrics = manifest.dataset, manifest.split, manifest.metrics
    lines = [
        f"# Pipeline run `{manifest.run_id}`",
        "",
        f"- model: **{manifest.model}**, seed {manifest.seed}, "
        f"config fingerprint `{manifest.config_fingerprint[:12]}`",
        f"- dataset {data.name} `{data.id[:12]}` ({data.source}): {data.rows:,} interactions, "
        f"{data.users:,} users, {data.items:,} items",
        f"- split {split.strategy}: {split.train_rows:,} train / {split.test_rows:,} test events",
        f"- evaluated users: {int(metrics.get('users', 0)):,} (skipped, unseen in training: "
        f"{int(metrics.get('users_skipped', 0)):,})",
        f"- validation: {manifest.validation}",
        *(["", f"> **Caution:** {caveat}"] if (caveat := metrics_caveat(manifest)) else []),
        "",
        "| metric | value | 95% interval |",
        "| --- | --- | --- |",
    ]
    intervals = manifest.metric_intervals
    lines += [
        f"| {name} | {value:.4f} | {_interval(intervals.get(name))} |"
        for name, value in metric_items(metrics)
    ]
    lines += ["", "## Artifacts", "", "| name | id | made by | from |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {name} | `{a.id[:12]}` | {a.task} | {', '.join(a.parents)} |"
        for name, a in manifest.artifacts.items()
    ]
    lines += ["", "## Tasks", "", "| task | state | seconds | peak RSS MB |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {name} | {t.state} | {t.seconds:.2f} | {_megabytes(t.peak_rss_mb)} |"
        for name, t in manifest.tasks.items()
    ]
    return "\n".join(lines) + "\n"


def metric_items(metrics: dict[str, float]) -> list[tuple[str, float]]:
    """Ranking metrics only (names with '@'), in a stable order."""
    return sorted((name, float(value)) for name, value in metrics.items() if "@" in name)


def _megabytes(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"  # manifests written before memory was recorded lack it


def _interval(bounds: list[float] | None) -> str:
    return f"{bounds[0]:.4f} - {bounds[1]:.4f}" if bounds else ""
