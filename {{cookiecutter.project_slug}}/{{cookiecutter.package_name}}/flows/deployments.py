"""What runs unattended: the flows behind the deployments, the deployments themselves, and `serve_all`.

- `nightly`      retrain on a cron schedule (`deploy.pipeline_cron`);
- `hourly`       the monitor on its own schedule (`deploy.monitor_cron`);
- `on-new-data`  ingest + pipeline, triggered by `deploy.new_data_event` (emitted by `watch`);
- `on-drift`     retrain, triggered by `deploy.drift_event` (emitted by `monitor`).

`serve_all` runs all four on this machine, one flow run at a time: ingests move the current-snapshot pointer
and must not interleave. deployments/prefect.yaml declares the same for `prefect deploy` with a work pool.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.deployments.runner import EntrypointType
from prefect.events import DeploymentEventTrigger, emit_event
from prefect.schedules import Cron
from prefect.states import Failed, State

from ..artifacts import open_store
from ..artifacts.landing import current_snapshot
from ..settings import PACKAGE, Settings, settings_for_flow
from .ingest import ingest
from .monitor import DATASET_RESOURCE, monitor
from .pipeline import pipeline

LANDING_RESOURCE = f"{PACKAGE}.landing"
# The server renders this Jinja template from the triggering event (written in two pieces so that the
# project template engine, which also speaks Jinja, leaves it alone).
_EVENT_PATH = "{" + "{ event.payload.path }" + "}"


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


def emit_new_data(settings: Settings, path: str, size: int) -> None:
    """Tell the served deployments that a batch file landed (what `watch` does for each new file)."""
    emit_event(
        event=settings.deploy.new_data_event,
        resource={"prefect.resource.id": f"{LANDING_RESOURCE}.{_resource_name(path)}"},
        payload={"path": path, "size": size},
    )


def build_deployments(settings: Settings, parameters: dict[str, Any]) -> list[Any]:
    """The four deployments; `parameters` carries the settings (`config` or `config_files`) to every run."""
    deploy = settings.deploy
    common = {"entrypoint_type": EntrypointType.MODULE_PATH}  # importable wherever the package is installed
    return [
        retrain.to_deployment(
            name="nightly",
            schedules=[Cron(deploy.pipeline_cron, timezone="UTC")],
            parameters={**parameters, "reason": "schedule"},
            **common,
        ),
        monitor.to_deployment(
            name="hourly",
            schedules=[Cron(deploy.monitor_cron, timezone="UTC")],
            parameters=parameters,
            **common,
        ),
        ingest_and_train.to_deployment(
            name="on-new-data",
            triggers=[
                DeploymentEventTrigger(
                    name=f"{PACKAGE}-on-new-data",
                    expect={deploy.new_data_event},
                    match={"prefect.resource.id": f"{LANDING_RESOURCE}.*"},
                    parameters={**parameters, "path": _EVENT_PATH},
                )
            ],
            **common,
        ),
        retrain.to_deployment(
            name="on-drift",
            triggers=[
                DeploymentEventTrigger(
                    name=f"{PACKAGE}-on-drift",
                    expect={deploy.drift_event},
                    match={"prefect.resource.id": DATASET_RESOURCE},
                    parameters={**parameters, "reason": "drift"},
                )
            ],
            **common,
        ),
    ]


def serve_all(settings: Settings, parameters: dict[str, Any]) -> None:
    """Serve every deployment from this process until interrupted (needs a Prefect server)."""
    from prefect import serve

    serve(*build_deployments(settings, parameters), limit=1)


def _resource_name(path: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in path.rsplit("/", 1)[-1])
