"""`simulate`: replay batches through the served deployments and keep a timeline of what happened.

For each batch: write it into the landing zone, emit the new-data event (as `watch` would) and wait for the
`ingest-and-train/on-new-data` run it triggers; then run `monitor/hourly` (as its schedule would) and, when
the monitor emitted the drift event, wait for the `retrain/on-drift` run it triggers. After a quarantined
batch the monitor is not run: nothing new landed, so its last check stands (the timeline says so).
What each run did is read back from the registry, the quarantine and the monitor's latest result, so the
timeline shows outcomes, not only states. Needs a Prefect server and `serve` running against it
(`served` starts `serve`, and a temporary server where no API is configured: the command line configures
the project's server).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import yaml

from flows.monitoring import LATEST
from flows.schedule import automation_name, emit_new_data
from flows.server import free_port, wait_healthy
from {{ cookiecutter.package_name }}.artifacts import open_store
from {{ cookiecutter.package_name }}.artifacts.landing import LandingZone
from {{ cookiecutter.package_name }}.artifacts.registry import CHAMPION, open_registry
from {{ cookiecutter.package_name }}.processes import dies_with_parent
from {{ cookiecutter.package_name }}.settings import PACKAGE, Settings
from {{ cookiecutter.package_name }}.simulation import Batch

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

DEPLOYMENTS = ("ingest-and-train/on-new-data", "monitor/hourly", "retrain/on-drift", "retrain/nightly")
AUTOMATIONS = (automation_name("on-new-data"), automation_name("on-drift"))
NOTHING_NEW = "nothing new landed: the last check stands"  # the monitor's step after a quarantined batch
POLL_SECONDS = 0.25  # how often the replay looks at its runs: each of its steps waits for the one before


@dataclass(frozen=True)
class Step:
    """One flow run of the replay, as the timeline shows it."""

    at: float  # seconds since the simulation started
    batch: str
    what: str  # ingest+train | monitor | retrain
    flow_run: str
    state: str
    detail: str


def simulate(
    settings: Settings, batches: list[Batch], say: Callable[[Step], None], timeout: float = 600
) -> list[Step]:
    """Replay `batches` through the served deployments (they must be served already)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    started = time.monotonic()
    landing = LandingZone(settings.ingest)
    landing.landing.mkdir(parents=True, exist_ok=True)
    steps: list[Step] = []

    def record(batch: Batch, what: str, run: Any, detail: str) -> None:
        """A step of the timeline: what `run` did (None: no run was started for it)."""
        name, state = (run.name, run.state.name) if run is not None else ("-", "Skipped")
        steps.append(Step(round(time.monotonic() - started, 1), batch.name, what, name, state, detail))
        say(steps[-1])

    with get_client(sync_client=True) as client:
        ids = {name: client.read_deployment_by_name(name).id for name in DEPLOYMENTS}
        for batch in batches:
            before = _registry_state(settings)
            quarantined = len(landing.quarantined())
            path = landing.landing / batch.name
            partial = landing.landing / f".{batch.name}.partial"  # hidden: `watch` and `ingest` skip it
            partial.write_bytes(batch.data)
            partial.replace(path)
            emitted = datetime.now(UTC)
            emit_new_data(settings, str(path.resolve()), len(batch.data))
            run = _wait_for_run(client, ids["ingest-and-train/on-new-data"], emitted, timeout)
            record(batch, "ingest+train", run, _ingest_detail(settings, before, quarantined, landing))
            if len(landing.quarantined()) > quarantined:
                record(batch, "monitor", None, NOTHING_NEW)
                continue

            checked = run_deployment(DEPLOYMENTS[1], timeout=timeout, poll_interval=POLL_SECONDS)
            latest = json.loads(open_store(settings.storage).read_text(LATEST))
            verdict = "DRIFT: " if latest.get("drifted") else "no drift: "
            record(batch, "monitor", checked, verdict + "; ".join(latest.get("reasons", [])))
            if latest.get("event", {}).get("emit"):  # drift held back as already reported starts no retrain
                before = _registry_state(settings)
                retrained = _wait_for_run(client, ids["retrain/on-drift"], _started_at(checked), timeout)
                record(batch, "retrain", retrained, _model_detail(settings, before))
    return steps


def format_step(step: Step) -> str:
    """A timeline line: seconds since the start, batch, flow, state, run name and what it did."""
    at, run = f"{step.at:7.1f}s", f"{step.state:<10} {step.flow_run:<24}"
    return f"{at}  {step.batch:<18} {step.what:<13} {run} {step.detail}"


@contextmanager
def served(settings: Settings, project_dir: Path, log: Callable[[str], None], log_dir: Path) -> Iterator[str]:
    """A Prefect server (the configured one, or a temporary one on 127.0.0.1) and `serve` against it; the
    `simulate` command configures the project's server (reused, or started once, and left running).

    Yields the API URL; stops what it started, the serving process first. Their output goes to `log_dir`.
    """
    from prefect.client.orchestration import get_client
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    processes: list[subprocess.Popen[bytes]] = []
    scratch = Path(tempfile.mkdtemp(prefix="simulate-"))  # the temporary server's home and the config file
    url = PREFECT_API_URL.value()
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    try:
        if not url:
            port = free_port()
            url = f"http://127.0.0.1:{port}/api"
            home = scratch / "prefect-home"
            log(f"starting a temporary Prefect server on {url.removesuffix('/api')} (UI)")
            processes.append(
                _spawn(
                    [
                        sys.executable,
                        "-m",
                        "prefect",
                        "server",
                        "start",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                    ],
                    {**env, "PREFECT_HOME": str(home)},
                    project_dir,
                    log_dir / "prefect-server.log",
                )
            )
            wait_healthy(url, timeout=120, process=processes[-1])
        config = scratch / "config.yaml"  # what the served runs use (secrets stay in the environment)
        config.write_text(yaml.safe_dump(settings.resolved()))
        log("serving the deployments")
        with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as client:
            # A previous `serve`'s, on a reused server: this one replaces them.
            stale = set().union(*_automation_ids(client))
        processes.append(
            _spawn(
                [sys.executable, "-m", PACKAGE, "serve", "--config", str(config)],
                {**env, "PREFECT_API_URL": url},
                project_dir,
                log_dir / "serve.log",
            )
        )
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                _wait_served(timeout=120, server=processes[-1], stale=stale)
                yield url
            finally:
                # Deliver the events this process emitted while the server still runs, and retire the
                # process-wide events worker bound to it: a later one must not send to a server gone.
                EventsWorker.drain_all(timeout=30, at_exit=False)
    finally:
        for process in reversed(processes):
            _stop(process)
        shutil.rmtree(scratch, ignore_errors=True)


def _registry_state(settings: Settings) -> dict[str, Any]:
    registry = open_registry(settings.registry, settings.storage)
    champion = registry.alias(CHAMPION, settings.data.dataset_name())
    return {"versions": len(registry.versions()), "champion": champion.version if champion else None}


def _ingest_detail(settings: Settings, before: dict[str, Any], quarantined: int, landing: LandingZone) -> str:
    held = landing.quarantined()
    if len(held) > quarantined:
        newest = max(held, key=lambda q: q.get("quarantined_at", ""))
        reasons = "; ".join(newest.get("reasons", []))[:160]
        serving = f"champion still v{before['champion']}" if before["champion"] else "still no champion"
        return f"quarantined {newest.get('file', '')}: {reasons}; {serving}"
    return _model_detail(settings, before)


def _model_detail(settings: Settings, before: dict[str, Any]) -> str:
    registry = open_registry(settings.registry, settings.storage)
    versions = registry.versions()[before["versions"] :]
    if not versions:
        return "no new model"
    parts = []
    for v in versions:
        decisions = registry.decisions(v.version)
        verdict = (
            ("promoted to champion" if decisions[-1].promoted else "not promoted")
            if decisions
            else "registered"
        )
        reason = decisions[-1].reason if decisions else ""
        parts.append(f"v{v.version} ({v.model_name}) {verdict}: {reason}")
    return " | ".join(parts)


def _wait_for_run(client: Any, deployment_id: UUID, after: datetime, timeout: float) -> Any:
    """The first run of the deployment expected to start after `after`, once it reached a final state."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        TaskRunFilter,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                expected_start_time=FlowRunFilterExpectedStartTime(after_=after - timedelta(seconds=2))
            ),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            task_run_filter=TaskRunFilter(),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=1,
            offset=0,
        )
        if runs and runs[0].state is not None and runs[0].state.is_final():
            return runs[0]
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"no finished run of deployment {deployment_id} within {timeout:.0f}s")


def _started_at(run: Any) -> datetime:
    return run.start_time or run.expected_start_time or datetime.now(UTC)


def _spawn(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        # Own process group, so stopping it also stops the flow-run subprocesses it started; and it ends
        # with this process, even a killed one (`dies_with_parent`).
        return subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=dies_with_parent(),
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGINT, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _automation_ids(client: SyncPrefectClient) -> list[set[UUID]]:
    """The ids of each served deployment's event automation now on the server (empty on a new server)."""
    return [{a.id for a in client.read_automations_by_name(name)} for name in AUTOMATIONS]


def _wait_served(timeout: float, server: subprocess.Popen[bytes], stale: set[UUID]) -> None:
    """Until every deployment exists and both event automations are this `serve`'s.

    Serving a deployment replaces its automations (deleted, then made again with this run's parameters), so
    an automation whose id is in `stale` (read before `serve` started) would still start runs with the
    previous `serve`'s settings: a batch announced then would be looked for in another landing zone.
    """
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"`{PACKAGE} serve` exited with code {server.returncode}")
            try:
                for name in DEPLOYMENTS:
                    client.read_deployment_by_name(name)
                if all(ids and not ids & stale for ids in _automation_ids(client)):
                    return
            except Exception:  # not there yet (ObjectNotFound) or the server still starting
                pass
            time.sleep(0.25)
    raise TimeoutError(f"the deployments were not served within {timeout:.0f}s")
