"""The unattended deployments, defined once: `serve` runs them on this machine and deployments/prefect.yaml
declares the same for a work pool (tests/test_deployments.py proves the two agree).

- `nightly`      retrain on a cron schedule (`deploy.pipeline_cron`);
- `hourly`       the monitor on its own schedule (`deploy.monitor_cron`);
- `on-new-data`  ingest + pipeline, triggered by `deploy.new_data_event` (emitted by `watch`);
- `on-drift`     retrain, triggered by `deploy.drift_event` (emitted by `monitor`).

`serve_all` runs all four on this machine, one flow run at a time: ingests move the current-snapshot pointer
and must not interleave. Deployments point at their flows by file path from the project root (entrypoints
such as `flows/retrain.py:retrain`), as prefect.yaml does, so `serve` must be started from there.
"""

from __future__ import annotations

from typing import Any

from prefect.events import DeploymentEventTrigger, emit_event
from prefect.schedules import Cron

from flows.monitoring import DATASET_RESOURCE, monitor
from flows.retrain import ingest_and_train, retrain
from {{ cookiecutter.package_name }}.settings import PACKAGE, Settings

LANDING_RESOURCE = f"{PACKAGE}.landing"
# The server renders this Jinja template from the triggering event (written in two pieces so that the
# project template engine, which also speaks Jinja, leaves it alone).
_EVENT_PATH = "{" + "{ event.payload.path }" + "}"


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
    # File-path entrypoints relative to the project root, as in prefect.yaml (the default type).
    return [
        retrain.to_deployment(
            name="nightly",
            schedules=[Cron(deploy.pipeline_cron, timezone="UTC")],
            parameters={**parameters, "reason": "schedule"},
        ),
        monitor.to_deployment(
            name="hourly",
            schedules=[Cron(deploy.monitor_cron, timezone="UTC")],
            parameters=parameters,
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
        ),
    ]


def serve_all(settings: Settings, parameters: dict[str, Any]) -> None:
    """Serve every deployment from this process until interrupted (needs a Prefect server)."""
    from prefect import serve

    # Look for due runs twice a second (Prefect's default, 10 s, adds up to 10 s before a run starts); a
    # poll is one small query. A run due while the previous one's process exits waits for the next poll.
    serve(*build_deployments(settings, parameters), limit=1, query_seconds=0.5)


def _resource_name(path: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in path.rsplit("/", 1)[-1])
