"""The unattended deployments, defined once: `serve` runs them on this machine and deployments/prefect.yaml
declares the same for a work pool (tests/test_deployments.py proves the two agree).

- `nightly`      retrain on a cron schedule (`deploy.pipeline_cron`);
- `hourly`       the monitor on its own schedule (`deploy.monitor_cron`);
- `on-new-data`  ingest + pipeline, triggered by `deploy.new_data_event` (emitted by `watch`);
- `on-drift`     retrain, triggered by `deploy.drift_event` (emitted by `monitor`).

`serve_all` runs all four on this machine, one flow run at a time (ingests move the current-snapshot pointer
and must not interleave), each run forked from a process that imported its libraries already. Deployments
point at their flows by file path from the project root (entrypoints such as `flows/retrain.py:retrain`), as
prefect.yaml does, so `serve` must be started from there.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from typing import Any

from prefect import Flow
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


Served = tuple[Flow[Any, Any], dict[str, Any]]  # a flow and the options that make it a deployment


def deployment_options(settings: Settings, parameters: dict[str, Any]) -> list[Served]:
    """The four deployments, each a flow and its options (`Flow.to_deployment`'s, which `Runner.add_flow`
    takes too); `parameters` carries the settings (`config` or `config_files`) to every run."""
    deploy, landed = settings.deploy, f"{LANDING_RESOURCE}.*"
    return [
        (retrain, _on_schedule("nightly", deploy.pipeline_cron, {**parameters, "reason": "schedule"})),
        (monitor, _on_schedule("hourly", deploy.monitor_cron, parameters)),
        (
            ingest_and_train,
            _on_event("on-new-data", deploy.new_data_event, landed, {**parameters, "path": _EVENT_PATH}),
        ),
        (
            retrain,
            _on_event("on-drift", deploy.drift_event, DATASET_RESOURCE, {**parameters, "reason": "drift"}),
        ),
    ]


def automation_name(deployment: str) -> str:
    """The name of the automation that starts an event-triggered deployment's runs."""
    return f"{PACKAGE}-{deployment}"


def _on_schedule(name: str, cron: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "schedules": [Cron(cron, timezone="UTC")], "parameters": parameters}


def _on_event(name: str, event: str, resource: str, parameters: dict[str, Any]) -> dict[str, Any]:
    trigger = DeploymentEventTrigger(
        name=automation_name(name),
        expect={event},
        match={"prefect.resource.id": resource},
        parameters=parameters,
    )
    return {"name": name, "triggers": [trigger]}


def build_deployments(settings: Settings, parameters: dict[str, Any]) -> list[Any]:
    """The four deployments as Prefect declares them (file-path entrypoints from the project root, as in
    prefect.yaml)."""
    return [flow_.to_deployment(**options) for flow_, options in deployment_options(settings, parameters)]


def serve_all(settings: Settings, parameters: dict[str, Any]) -> None:
    """Serve every deployment from this process until interrupted (needs a Prefect server).

    The flows are given to Prefect's runner as objects (`Runner.add_flow`, as `Flow.serve` does), so that it
    starts each run from them in a new process, which `_fork_runs_warm` makes a fork of a process that
    imported everything already; deployments given by entrypoint would start `python -m prefect.engine`
    and import it all again for each run. The code a run executes is the code `serve` started with.
    """
    import asyncio

    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner
    from prefect.settings import PREFECT_API_URL

    _fork_runs_warm()
    # Look for due runs twice a second (Prefect's default, 10 s, adds up to 10 s before a run starts); a
    # poll is one small query. A run due while the previous one's process exits waits for the next poll.
    runner = Runner(limit=1, query_seconds=0.5)
    served = []
    for flow_, options in deployment_options(settings, parameters):
        runner.add_flow(flow_, **options)
        served.append(f"{flow_.name}/{options['name']}")
    print(f"Serving {', '.join(served)} on this machine for {PREFECT_API_URL.value()}; Ctrl+C stops")
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal):
        print("serve: stopped")


def _fork_runs_warm() -> None:
    """Start this process's flow runs from a fork server that imported their libraries (flows/warm.py).

    Prefect starts a served flow's run with `multiprocessing.get_context("spawn")` (prefect.flow_engine's
    `run_flow_in_subprocess`); that module is given a `multiprocessing` whose contexts are all the fork
    server. Where there is none (Windows), runs are spawned as before. The fork server starts now, in the
    background, so the first run finds it warm; code changed under `flows/` is taken up by a new `serve`.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    import prefect.flow_engine

    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(["flows.warm"])
    prefect.flow_engine.multiprocessing = _OneContext(forkserver)  # type: ignore[assignment]
    # Its first child starts the fork server, which then imports for ~10 s: here, not in the first run.
    threading.Thread(target=_first_fork, args=(forkserver,), name="forkserver", daemon=True).start()


class _OneContext:
    """`multiprocessing`, except that every start method asked for is `context`."""

    def __init__(self, context: multiprocessing.context.BaseContext) -> None:
        self._context = context

    def get_context(self, method: str | None = None) -> multiprocessing.context.BaseContext:
        return self._context

    def __getattr__(self, name: str) -> Any:
        return getattr(multiprocessing, name)


def _first_fork(context: multiprocessing.context.ForkServerContext) -> None:
    child = context.Process(target=os.getpid)
    child.start()
    child.join()


def _resource_name(path: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in path.rsplit("/", 1)[-1])
