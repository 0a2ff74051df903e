"""Drift and decay of the champion: has the data moved away from what it was trained on, and does it still
rank the newest interactions as well as when it was promoted?

Windows. The reference is the champion's training data; the current window is every event newer than the
last one it trained on (with a temporal split that is its test period plus whatever arrived since). Features
of an event are read against what came before it: for the current window, against the whole reference; for
the reference, its last fifth against the four fifths before. So "share of new users" or "how popular is the
item" mean the same thing on both sides, whatever the window sizes.

Event features: user history and item popularity (log1p of the user's / item's earlier events per 100,000
earlier events, so the size of "before" cancels out), new user, new item, rating, hour of day, day of week.
Prediction features, for a seeded sample of users of each window: the champion's top-10 scores and the
popularity of the items it recommends.

Drift is an effect size, never a p-value: with tens of thousands of events every tiny difference is
"significant", and events come in sessions (one user rates dozens of films in an hour), so the effective
sample is far smaller than the row count a p-value would assume. Evidently scores every column with one fixed
method at any size (normed Wasserstein distance for numbers, the rating included since a star is a distance;
Jensen-Shannon distance for categories: its automatic choice switches to p-values below 1,000 rows, which
would change what a threshold means) against `monitor.thresholds`, set by benchmarks/drift.py so that a
stationary stream stays below them and a material shift does not, and raised for small windows to what
chance alone produces when each user counts once (`monitor.noise_allowance`, see `_noise_floor`). The data
counts as drifted when the share of drifted counted columns reaches `monitor.drift_share` (by default one).
Context features (`monitor.context_columns`) are reported but never counted. Hour of day and day of week:
in a log of rating sessions they say when a few heavy users sat down rather than what people like, they move
with every window's handful of sessions, and the champion does not use time at all; a move to other hours
that matters (other items, other users, other ratings) moves the counted features too. The prediction
features: on the reference's side the champion has trained on the window's sessions, on the current side it
has not, so with bursty sessions their scores differ by construction (MovieLens 100K in its real order:
normed Wasserstein 0.47-0.65 with nothing changed), while none of the shifts benchmarks/drift.py injects
moves them; decay is the check on the champion's own output.
Decay: the champion's primary metric on the current window (ranked as served) against the value recorded
when it was registered; more than `monitor.max_decay` lower is decay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import polars as pl

from .data import schema
from .settings import MonitorConfig

if TYPE_CHECKING:  # torch: imported by `check` when it ranks, not by a flow that loads this module
    from .models import Recommender

EVENT_NUMERIC = ("user_history", "item_popularity", "rating")
EVENT_CATEGORICAL = ("new_user", "new_item", "hour_of_day", "day_of_week")
PREDICTION_NUMERIC = ("score", "recommended_item_popularity")
_K = 10
_NUMERIC_METHOD, _CATEGORICAL_METHOD = "wasserstein", "jensenshannon"
_DEFAULT_THRESHOLD = 0.1  # Evidently's own, for a column `monitor.thresholds` does not name


class Performance(TypedDict, total=False):
    """The primary metric of the champion: as registered, on the new events, and its fall between them
    (empty when too few new events were judged)."""

    metric: str
    registered: float
    current: float
    decay: float


@dataclass
class DriftCheck:
    """One monitor check of the champion: drifted or not, why, and each column's score and threshold."""

    drifted: bool
    reasons: list[str]
    reference_events: int
    current_events: int
    event_columns: list[dict[str, Any]]  # column, method, threshold, score, drifted, counted
    prediction_columns: list[dict[str, Any]]
    event_drift_share: float
    prediction_drift_share: float
    new_user_share: float
    new_item_share: float
    performance: Performance
    reports: dict[str, Any] = field(default_factory=dict, repr=False)  # Evidently snapshots, for the HTML

    def to_dict(self) -> dict[str, Any]:
        """The check as JSON-ready values, without the Evidently snapshots (`save_html` writes those)."""
        return {k: v for k, v in self.__dict__.items() if k != "reports"}

    def save_html(self, directory: Path) -> dict[str, Path]:
        """Write each Evidently report as `<name>-drift.html` under `directory`; returns the paths by name."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, snapshot in self.reports.items():
            paths[name] = directory / f"{name}-drift.html"
            snapshot.save_html(str(paths[name]))
        return paths

    def markdown(self) -> str:
        """The check for a person: the verdict, its reasons, the windows' sizes and every column's score."""
        verdict = "**drift or decay**" if self.drifted else "no drift"
        lines = [
            f"# Monitor: {verdict}",
            "",
            *(f"- {r}" for r in self.reasons),
            "",
            f"{self.current_events:,} new events against {self.reference_events:,} in the champion's "
            "training data.",
            "",
            "| column | method | score | threshold | drifted |",
            "| --- | --- | --- | --- | --- |",
        ]
        for c in self.event_columns + self.prediction_columns:
            drifted = "yes" if c["drifted"] else "no"
            if not c["counted"]:
                drifted += " (context, not counted)"
            lines.append(
                f"| {c['column']} | {c['method']} | {c['score']:.3f} | {c['threshold']:.3f} | {drifted} |"
            )
        p = self.performance
        if p:
            lines += ["", f"{p['metric']}: {p['current']:.4f} now, {p['registered']:.4f} when registered."]
        return "\n".join(lines) + "\n"


def new_events(snapshot: pl.DataFrame, reference: pl.DataFrame) -> pl.DataFrame:
    """Events of `snapshot` later than the reference's last event (the champion has not trained on them).

    Without timestamps, "later" is the order of arrival: the snapshot's events after the last one of the
    reference's (a snapshot only grows at its end).
    """
    if reference.height == 0:
        return snapshot
    if "timestamp" in snapshot.columns:
        return snapshot.filter(pl.col("timestamp") > reference.get_column("timestamp").max())
    key = ["user_id", "item_id"]
    positions = snapshot.select(key).with_row_index("_row").join(reference.select(key), on=key, how="semi")
    last = positions.select(pl.col("_row").max()).item()
    return snapshot if last is None else snapshot.slice(int(last) + 1)


def check(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    model: Recommender,
    registered: dict[str, float],
    metric: str,
    cfg: MonitorConfig,
    seed: int,
) -> DriftCheck:
    """Compare the current window with the champion's training data; `registered` = its recorded metrics."""
    if current.height < cfg.min_new_events:
        return DriftCheck(
            drifted=False,
            reasons=[f"only {current.height} new events (min_new_events {cfg.min_new_events}): not judged"],
            reference_events=reference.height,
            current_events=current.height,
            event_columns=[],
            prediction_columns=[],
            event_drift_share=0.0,
            prediction_drift_share=0.0,
            new_user_share=0.0,
            new_item_share=0.0,
            performance={},
        )
    base, recent = _tail_split(reference)
    ref_events = _sample(event_features(recent, base), cfg.max_rows, seed)
    cur_events = _sample(event_features(current, reference), cfg.max_rows, seed)
    numeric = [
        c for c in EVENT_NUMERIC if c in ref_events.columns and ref_events.get_column(c).null_count() == 0
    ]
    event_users = (recent.get_column("user_id").n_unique(), current.get_column("user_id").n_unique())
    events, event_share, event_snapshot = _compare(
        ref_events,
        cur_events,
        numeric,
        [c for c in EVENT_CATEGORICAL if c in ref_events.columns],
        event_users,
        cfg,
    )
    popularity = (
        reference.group_by("item_id")
        .len("count")
        .with_columns(pl.col("count") * (100_000 / max(reference.height, 1)))
    )
    ref_predictions = prediction_features(model, recent, base, popularity, cfg.users_for_predictions, seed)
    cur_predictions = prediction_features(
        model, current, reference, popularity, cfg.users_for_predictions, seed
    )
    prediction_users = (ref_predictions["user_id"].n_unique(), cur_predictions["user_id"].n_unique())
    predictions, prediction_share, prediction_snapshot = _compare(
        ref_predictions, cur_predictions, list(PREDICTION_NUMERIC), [], prediction_users, cfg
    )

    ks = sorted({_K, int(metric.split("@")[1])}) if "@" in metric else [_K]
    from .evaluation import evaluate

    now = evaluate(model, reference, current, ks, as_served=True).summary.get(metric, float("nan"))
    before = registered.get(metric, float("nan"))
    performance: Performance = {"metric": metric, "registered": before, "current": now, "decay": before - now}

    reasons = []
    if event_share >= cfg.drift_share:
        drifted_names = ", ".join(c["column"] for c in events if c["drifted"] and c["counted"])
        reasons.append(f"interaction data drifted: {event_share:.0%} of features ({drifted_names})")
    if prediction_share >= cfg.drift_share:
        reasons.append(f"predictions drifted: {prediction_share:.0%} of prediction features")
    if performance["decay"] > cfg.max_decay:
        reasons.append(
            f"{metric} fell from {before:.4f} to {now:.4f} on the new events (more than {cfg.max_decay})"
        )
    drifted = bool(reasons)
    if not reasons:
        reasons.append(
            f"within thresholds: {event_share:.0%} of interaction features and {prediction_share:.0%} of "
            f"prediction features drifted; {metric} {now:.4f} vs {before:.4f}"
        )
    return DriftCheck(
        drifted=drifted,
        reasons=reasons,
        reference_events=reference.height,
        current_events=current.height,
        event_columns=events,
        prediction_columns=predictions,
        event_drift_share=event_share,
        prediction_drift_share=prediction_share,
        new_user_share=float(cur_events.select(pl.col("new_user").eq("yes").mean()).item()),
        new_item_share=float(cur_events.select(pl.col("new_item").eq("yes").mean()).item()),
        performance=performance,
        reports={"events": event_snapshot, "predictions": prediction_snapshot},
    )


def event_features(events: pl.DataFrame, before: pl.DataFrame) -> pl.DataFrame:
    """One row per event: its user's and item's earlier activity in `before`, newness, rating, time."""
    per_100k = 100_000 / max(before.height, 1)
    users = before.group_by("user_id").len("user_events")
    items = before.group_by("item_id").len("item_events")
    joined = events.join(users, on="user_id", how="left").join(items, on="item_id", how="left")
    columns = [
        (pl.col("user_events").fill_null(0) * per_100k).log1p().alias("user_history"),
        (pl.col("item_events").fill_null(0) * per_100k).log1p().alias("item_popularity"),
        pl.when(pl.col("user_events").is_null())
        .then(pl.lit("yes"))
        .otherwise(pl.lit("no"))
        .alias("new_user"),
        pl.when(pl.col("item_events").is_null())
        .then(pl.lit("yes"))
        .otherwise(pl.lit("no"))
        .alias("new_item"),
    ]
    if "timestamp" in events.columns:  # data without timestamps has no time of day to compare
        when = pl.from_epoch(pl.col("timestamp"), time_unit="s")
        columns.append(when.dt.hour().cast(pl.String).alias("hour_of_day"))
        columns.append(when.dt.weekday().cast(pl.String).alias("day_of_week"))
    if "rating" in events.columns:
        columns.append(pl.col("rating").cast(pl.Float64))
    return joined.select(columns)


def prediction_features(
    model: Recommender,
    window: pl.DataFrame,
    before: pl.DataFrame,
    popularity: pl.DataFrame,
    n_users: int,
    seed: int,
) -> pl.DataFrame:
    """The champion's top-10 for a seeded sample of the window's events by users already in `before` (and
    known to the champion): user, scores, item popularity.

    As with the event features, "known" is read against what came before the window: on the reference's side
    the champion trained on the window too, and counting users it met only there would compare newcomers
    with returning users. A user is drawn as often as their events are: sampling distinct users instead
    would make the mix depend on the window's size (a short window holds mostly heavy users, scoring higher).
    """
    returning = window.join(before.select("user_id").unique(), on="user_id", how="semi")
    users = returning.get_column("user_id").to_numpy()
    known = users[model.vocabulary.user_index(users) >= 0] if model.vocabulary is not None else users[:0]
    rng = np.random.default_rng(seed)
    chosen = rng.choice(known, size=min(n_users, known.size), replace=False) if known.size else known
    drawn = pl.DataFrame({"user_id": np.sort(chosen)}, schema={"user_id": window.schema["user_id"]})
    recs = model.recommend(np.unique(chosen), _K)
    return (
        drawn.join(recs, on="user_id", how="inner")
        .join(popularity, on="item_id", how="left")
        .select(
            "user_id",
            pl.col("score").cast(pl.Float64),
            pl.col("count").fill_null(0).log1p().alias("recommended_item_popularity"),
        )
    )


def _tail_split(reference: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The reference's first four fifths (by time, or by arrival) and its last fifth."""
    rows = schema.ordered(reference)
    cut = int(rows.height * 0.8)
    return rows.head(cut), rows.slice(cut)


def _sample(frame: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    return frame if frame.height <= n else frame.sample(n=n, seed=seed)


def _compare(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    numeric: list[str],
    categorical: list[str],
    users: tuple[int, int],
    cfg: MonitorConfig,
) -> tuple[list[dict[str, Any]], float, Any]:
    """Evidently's drift test per column: (columns, share of counted ones drifted, the snapshot for HTML)."""
    from evidently import DataDefinition, Dataset, Report  # heavy import (several seconds): only when used
    from evidently.presets import DataDriftPreset

    if reference.height == 0 or current.height == 0:
        return [], 0.0, None
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    columns = numeric + categorical
    methods = {c: _NUMERIC_METHOD for c in numeric} | {c: _CATEGORICAL_METHOD for c in categorical}
    floor = _noise_floor(users, cfg.noise_allowance)
    thresholds = {c: max(cfg.thresholds.get(c, _DEFAULT_THRESHOLD), floor) for c in columns}
    preset = DataDriftPreset(
        columns=columns,
        drift_share=cfg.drift_share,
        per_column_method=methods,
        per_column_threshold=thresholds,
    )
    snapshot = Report([preset], include_tests=True).run(
        current_data=Dataset.from_pandas(current.select(columns).to_pandas(), data_definition=definition),
        reference_data=Dataset.from_pandas(reference.select(columns).to_pandas(), data_definition=definition),
    )
    result = snapshot.dict()
    # Per-column verdicts come from Evidently's tests, so the HTML report and this result always agree.
    status = {
        t.get("metric_config", {}).get("params", {}).get("column"): str(t["status"]).endswith("FAIL")
        for t in result["tests"]
    }
    out = []
    for metric in result["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            out.append(
                {
                    "column": config["column"],
                    "method": config.get("method"),
                    "threshold": config.get("threshold"),
                    "score": float(metric["value"]),
                    "drifted": bool(status.get(config["column"], False)),
                    "counted": config["column"] not in cfg.context_columns,
                }
            )
    counted = [c for c in out if c["counted"]]
    share = sum(c["drifted"] for c in counted) / len(counted) if counted else 0.0
    return out, share, snapshot


def _noise_floor(users: tuple[int, int], allowance: float) -> float:
    """The lowest threshold that small windows allow: `allowance` x sqrt(1/users + 1/users).

    A user's events share their history, their tastes and their session, so a window holds about as many
    independent draws as users, not events. Two samples of n and m such draws differ by a normed Wasserstein
    distance of the order of sqrt(1/n + 1/m) by chance alone (on stationary windows, benchmarks/drift.py
    sees at most about that much). With MovieLens 100K's 900-odd users per window the floor stays under
    `monitor.thresholds`; it governs windows of a few hundred users or fewer, such as an hour of new events.
    """
    n, m = (max(u, 1) for u in users)
    return allowance * math.sqrt(1 / n + 1 / m)
