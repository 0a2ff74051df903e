"""The dashboard across runs: what the run manifests, their statuses, the registry and the monitor's checks
say over weeks, gathered per dataset into plain records (`collect`), then drawn as one HTML page
(`dashboard_page.render`).

Nothing here is a second source of truth: every figure is read from where the run that made it recorded it.
Per pipeline run, its manifest (metrics and their intervals, per-step wall time, peak memory and cache state,
who ran it, with what config, on what data) and its status beside it (completed, failed at which step, the
registry version it registered); from the registry, the champion's moves with who made them and why; from
`monitor/checks/`, each monitor run's drift scores and thresholds (or its failure); from the landing zone's
quarantine and the snapshot history, how many batches were refused and taken in.

Everything is sorted and nothing reads the clock, so the same records always give the same page.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from .artifacts import ArtifactStore, open_store
from .artifacts import runs as catalog
from .artifacts.landing import LandingZone
from .artifacts.manifest import RunManifest
from .artifacts.registry import CHAMPION, AliasMove, ModelVersion
from .artifacts.verify import existing_registry
from .settings import Settings

CHECKS: Final = "monitor/checks"  # one JSON per monitor run (flows/monitoring.py writes it)
SNAPSHOT_HISTORY: Final = "snapshots/history"  # one JSON per batch taken in (landing.advance_snapshot)
LOCATION: Final = "dashboard/index.html"  # the page's stable place in the store
_NOT_METRICS: Final = ("users", "users_skipped")


@dataclass(frozen=True)
class StepCost:
    """One pipeline step of one run: wall seconds, peak resident MB (None before it was measured), cached."""

    seconds: float
    peak_rss_mb: float | None
    cached: bool


@dataclass(frozen=True)
class RunPoint:
    """One pipeline run as the dashboard shows it."""

    run_id: str
    started_at: str
    finished_at: str
    user: str
    config_fingerprint: str
    dataset_id: str
    model: str
    status: str  # completed, failed, stopped, running
    metric: float | None  # the primary metric
    interval: tuple[float, float] | None  # its 95% bootstrap interval
    metrics: dict[str, float]
    steps: dict[str, StepCost]
    version: int | None  # the registry version it registered or reused
    champion: bool  # that version has been its dataset's champion
    report: str  # paths inside the store
    manifest: str


@dataclass(frozen=True)
class ChampionMove:
    """A move of the champion alias (promote, rollback, ...), with who made it and why."""

    at: str
    action: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    metrics: dict[str, float]  # those of the version that became champion (empty when none did)


@dataclass(frozen=True)
class DriftCheck:
    """One monitor run: per feature its score and threshold (empty when it failed or had nothing to check)."""

    at: str
    champion: int | None
    drifted: bool
    failed: str | None
    scores: dict[str, tuple[float, float, bool]]  # column -> (score, threshold, counted)


@dataclass(frozen=True)
class FailedRun:
    """A pipeline run that did not complete: when, at which step, and why."""

    run_id: str
    at: str
    status: str
    step: str | None
    reason: str


@dataclass(frozen=True)
class DatasetView:
    """Everything the dashboard shows about one dataset."""

    name: str
    primary_metric: str
    runs: list[RunPoint]  # oldest first
    moves: list[ChampionMove]
    checks: list[DriftCheck]
    failed: list[FailedRun]
    outcomes: dict[str, int]  # pipeline runs by status

    @property
    def failure_share(self) -> float | None:
        """Share of this dataset's pipeline and monitor runs that failed or were stopped (None: no runs)."""
        total = sum(self.outcomes.values()) + len(self.checks)
        bad = self.outcomes.get(catalog.FAILED, 0) + self.outcomes.get(catalog.STOPPED, 0)
        bad += sum(c.failed is not None for c in self.checks)
        return bad / total if total else None


@dataclass(frozen=True)
class Dashboard:
    """Everything the dashboard page shows: one view per dataset, and the ingest's batches and quarantine."""

    datasets: list[DatasetView]
    batches_taken_in: int
    quarantined: list[dict[str, Any]] = field(default_factory=list)  # reason records, oldest first

    @property
    def quarantine_share(self) -> float | None:
        """Share of ingested batches that were refused (None: no batch yet)."""
        total = self.batches_taken_in + len(self.quarantined)
        return len(self.quarantined) / total if total else None


def collect_for(settings: Settings) -> tuple[Dashboard, ArtifactStore]:
    """The dashboard of the store, registry and quarantine `settings` name, and that store (a registry not
    made yet is not created: there is nothing in it to show)."""
    store = open_store(settings.storage)
    registry = existing_registry(settings.registry, settings.storage)
    dashboard = collect(
        store,
        registry.versions() if registry else [],
        registry.history(CHAMPION) if registry else [],
        settings.evaluation.primary_metric,
        LandingZone(settings.ingest).quarantined(),
    )
    return dashboard, store


def collect(
    store: ArtifactStore,
    versions: list[ModelVersion],
    moves: list[AliasMove],
    primary_metric: str,
    quarantined: Iterable[dict[str, Any]] = (),
) -> Dashboard:
    """The dashboard's records, from the store's runs and checks and the registry's `versions` and `moves`
    (`Registry.versions()`, `Registry.history()`; empty lists when there is no registry yet)."""
    statuses = catalog.run_statuses(store)
    manifests = catalog.list_runs(store)
    checks = [_check(store, name) for name in store.list(CHECKS) if name.endswith(".json")]
    by_version = {v.version: v for v in versions}
    version_of_run = {v.run_id: v.version for v in versions}
    for run_id, status in statuses.items():
        noted = (status.get("registry") or {}).get("version")
        if noted is not None:
            version_of_run[run_id] = int(noted)
    crowned = {m.to_version for m in moves if m.alias == CHAMPION and m.to_version is not None}

    names = {m.dataset.name for m in manifests} | {v.dataset for v in versions}
    names |= {c[0] for c in checks} | {_dataset_of(s) for r, s in statuses.items() if _orphan(r, manifests)}
    views = []
    for name in sorted(n for n in names if n):
        runs = [
            _point(m, statuses.get(m.run_id), version_of_run.get(m.run_id), crowned, primary_metric)
            for m in manifests
            if m.dataset.name == name
        ]
        held = {r.run_id for r in runs}
        own = {
            r: s
            for r, s in statuses.items()
            if r in held or (_orphan(r, manifests) and _dataset_of(s) == name)
        }
        outcomes: dict[str, int] = {}
        for run_id in sorted(held | set(own)):
            state = catalog.run_state(own.get(run_id))
            outcomes[state] = outcomes.get(state, 0) + 1
        views.append(
            DatasetView(
                name=name,
                primary_metric=primary_metric,
                runs=runs,
                moves=[_move(m, by_version) for m in moves if m.alias == CHAMPION and m.dataset == name],
                checks=sorted((c for d, c in checks if d == name), key=lambda c: c.at),
                failed=sorted(_failures(own), key=lambda f: (f.at, f.run_id)),
                outcomes=dict(sorted(outcomes.items())),
            )
        )
    taken = [n for n in store.list(SNAPSHOT_HISTORY) if n.endswith(".json")]
    refused = sorted(quarantined, key=lambda q: (str(q.get("quarantined_at", "")), str(q.get("file", ""))))
    return Dashboard(datasets=views, batches_taken_in=len(taken), quarantined=refused)


def _point(
    m: RunManifest,
    status: dict[str, Any] | None,
    version: int | None,
    crowned: set[int],
    primary_metric: str,
) -> RunPoint:
    bounds = m.metric_intervals.get(primary_metric)
    return RunPoint(
        run_id=m.run_id,
        started_at=m.started_at,
        finished_at=m.finished_at,
        user=m.environment.user,
        config_fingerprint=m.config_fingerprint,
        dataset_id=m.dataset.id,
        model=m.model,
        status=catalog.run_state(status),
        metric=m.metrics.get(primary_metric),
        interval=(float(bounds[0]), float(bounds[1])) if bounds and len(bounds) == 2 else None,
        metrics={k: v for k, v in sorted(m.metrics.items()) if k not in _NOT_METRICS},
        steps={name: StepCost(t.seconds, t.peak_rss_mb, t.state == "Cached") for name, t in m.tasks.items()},
        version=version,
        champion=version in crowned,
        report=f"runs/{m.run_id}/report.md",
        manifest=f"runs/{m.run_id}/{catalog.MANIFEST_NAME}",
    )


def _move(move: AliasMove, by_version: dict[int, ModelVersion]) -> ChampionMove:
    held = by_version.get(move.to_version) if move.to_version is not None else None
    return ChampionMove(
        at=move.at,
        action=move.action,
        from_version=move.from_version,
        to_version=move.to_version,
        actor=move.actor,
        reason=move.reason,
        metrics={k: v for k, v in sorted(held.metrics.items()) if k not in _NOT_METRICS} if held else {},
    )


def _check(store: ArtifactStore, name: str) -> tuple[str, DriftCheck]:
    """A stored monitor outcome as (dataset, check)."""
    outcome = json.loads(store.read_text(f"{CHECKS}/{name}"))
    columns = [*outcome.get("event_columns", []), *outcome.get("prediction_columns", [])]
    return str(outcome.get("dataset") or ""), DriftCheck(
        at=str(outcome.get("checked_at", "")),
        champion=outcome.get("champion"),
        drifted=bool(outcome.get("drifted")),
        failed=outcome.get("failed"),
        scores={
            str(c["column"]): (float(c["score"]), float(c["threshold"]), bool(c.get("counted", True)))
            for c in columns
        },
    )


def _orphan(run_id: str, manifests: list[RunManifest]) -> bool:
    """A run with a status but no manifest: it failed (or is running) before writing one."""
    return all(m.run_id != run_id for m in manifests)


def _dataset_of(status: dict[str, Any]) -> str:
    return str(status.get("dataset") or (status.get("registry") or {}).get("dataset") or "")


def _failures(statuses: dict[str, dict[str, Any]]) -> Iterable[FailedRun]:
    for run_id, status in statuses.items():
        state = catalog.run_state(status)
        if state in (catalog.FAILED, catalog.STOPPED):
            yield FailedRun(
                run_id=run_id,
                at=str(status.get("at", "")),
                status=state,
                step=status.get("step"),
                reason=str(status.get("reason") or "process gone while running"),
            )
