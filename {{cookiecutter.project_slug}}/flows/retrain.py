"""The flows behind the unattended deployments: `retrain` (schedule, drift) and `ingest-and-train` (new data).

Both train on the current snapshot (the configured source before anything was ingested); the trigger that
started them is recorded as the run's `trigger` tag.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Failed, State

from flows.ingest import ingest
from flows.pipeline import pipeline
from {{ cookiecutter.package_name }}.artifacts import open_store
from {{ cookiecutter.package_name }}.artifacts.landing import current_snapshot
from {{ cookiecutter.package_name }}.settings import Settings, settings_for_flow


@flow(name="ingest-and-train")
def ingest_and_train(
    config: dict[str, Any] | None = None, config_files: list[str] | None = None, path: str | None = None
) -> dict[str, Any] | State:
    """Ingest `path` (or all that waits), then run the pipeline on the new snapshot if anything was added."""
    settings = settings_for_flow(config, config_files)
    state = ingest(settings.resolved(), path=path or None, return_state=True)
    outcomes = state.result(raise_on_failure=False)
    if not isinstance(outcomes, list):  # the ingest flow crashed before reporting on batches
        raise RuntimeError(f"ingest {state.name}: {state.message}")
    result: dict[str, Any] = {"ingest": outcomes}
    if any(o["accepted"] and o.get("added") for o in outcomes):
        result["pipeline"] = pipeline(_on_snapshot(settings, "new-data").resolved())
    else:
        get_run_logger().info("no new events taken in: nothing to train")
    refused = [o for o in outcomes if not o["accepted"]]
    if refused:
        return Failed(message=state.message, data=result)
    return result


@flow(name="retrain")
def retrain(
    config: dict[str, Any] | None = None, config_files: list[str] | None = None, reason: str = "manual"
) -> dict[str, Any]:
    """The pipeline on the current snapshot (the configured source before anything was ingested); on drift
    with `deploy.drift_overrides` laid over the settings."""
    settings = settings_for_flow(config, config_files)
    if reason == "drift" and settings.deploy.drift_overrides:
        settings = settings.updated(settings.deploy.drift_overrides)
        get_run_logger().info("retrain on drift, with %s", settings.deploy.drift_overrides)
    else:
        get_run_logger().info("retrain (%s)", reason)
    return pipeline(_on_snapshot(settings, reason).resolved())


def _on_snapshot(settings: Settings, trigger: str) -> Settings:
    data = settings.data
    if current_snapshot(open_store(settings.storage)) is not None:
        data = data.model_copy(update={"source": "snapshot"})
    return settings.model_copy(update={"data": data, "tags": {**settings.tags, "trigger": trigger}})
