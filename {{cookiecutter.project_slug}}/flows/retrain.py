"""The flows behind the unattended deployments: `retrain` (schedule, drift) and `ingest-and-train` (new data).

Both train on the current snapshot (the configured source before anything was ingested); the trigger that
started them (`schedule`, `drift`, `new-data` or `manual`) is a `trigger=...` tag of their flow run and of
the runs under it, and is kept in the run manifest's tags. `ingest-and-train` takes a `path` (an event's
`payload.path`) only inside the landing zone; any other ends the run Failed with one line, nothing opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import State

from flows.ingestion import ingest, outcomes_of, outside, refused
from flows.pipeline import pipeline
from flows.ui import label_run
from {{ cookiecutter.package_name }}.artifacts import open_store
from {{ cookiecutter.package_name }}.artifacts.landing import LandingZone, OutsideLandingZone, current_snapshot
from {{ cookiecutter.package_name }}.settings import Settings, settings_for_flow


def _ingest_and_train_name() -> str:
    path = flow_run.parameters.get("path")
    return f"ingest-and-train {Path(path).name}" if path else "ingest-and-train landing zone"


@flow(name="ingest-and-train", flow_run_name=_ingest_and_train_name)
def ingest_and_train(
    config: dict[str, Any] | None = None, config_files: list[str] | None = None, path: str | None = None
) -> dict[str, Any] | State:
    """Ingest `path` (or all that waits), then run the pipeline on the new snapshot if anything was added."""
    settings = _triggered(settings_for_flow(config, config_files), "new-data")
    label_run(tags=settings.tags)
    if path:
        try:
            LandingZone(settings.ingest).confine(path)
        except OutsideLandingZone as exc:
            return outside(exc)
    state = ingest(settings.resolved(), path=path or None, return_state=True)
    outcomes = outcomes_of(state)
    if outcomes is None:  # the ingest flow crashed before reporting on batches
        raise RuntimeError(f"ingest {state.name}: {state.message}")
    result: dict[str, Any] = {"ingest": outcomes}
    if any(o["accepted"] and o.get("added") for o in outcomes):
        result["pipeline"] = pipeline(_on_snapshot(settings).resolved())
    else:
        get_run_logger().info("no new events taken in: nothing to train")
    if any(o["quarantined_to"] for o in outcomes):
        return refused(state.message or "batches refused", result)
    return result


@flow(name="retrain", flow_run_name="retrain ({reason})")
def retrain(
    config: dict[str, Any] | None = None, config_files: list[str] | None = None, reason: str = "manual"
) -> dict[str, Any]:
    """The pipeline on the current snapshot (the configured source before anything was ingested); on drift
    with `deploy.drift_overrides` laid over the settings."""
    settings = _triggered(settings_for_flow(config, config_files), reason)
    label_run(tags=settings.tags)
    if reason == "drift" and settings.deploy.drift_overrides:
        settings = settings.updated(settings.deploy.drift_overrides)
        get_run_logger().info("retrain on drift, with %s", settings.deploy.drift_overrides)
    else:
        get_run_logger().info("retrain (%s)", reason)
    return pipeline(_on_snapshot(settings).resolved())


def _triggered(settings: Settings, trigger: str) -> Settings:
    return settings.model_copy(update={"tags": {**settings.tags, "trigger": trigger}})


def _on_snapshot(settings: Settings) -> Settings:
    """The settings on the current snapshot, under the configured dataset's name: the snapshot grows from that
    data, so its models share one champion with it (and `monitor`, configured alike, finds that champion)."""
    if current_snapshot(open_store(settings.storage)) is None:
        return settings
    data = settings.data.model_copy(update={"source": "snapshot", "name": settings.data.dataset_name()})
    return settings.model_copy(update={"data": data})
