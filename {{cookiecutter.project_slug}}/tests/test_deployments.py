"""The served deployments: their schedules and triggers, and, against a real Prefect server started on
127.0.0.1 with `serve` in its own process, the new-data event running ingest + pipeline and the drift event
running a retrain. `served` stops both processes at the end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
import yaml
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from {{ cookiecutter.package_name }}.artifacts import open_store
from {{ cookiecutter.package_name }}.artifacts.landing import LandingZone, current_snapshot
from {{ cookiecutter.package_name }}.artifacts.registry import open_registry
from {{ cookiecutter.package_name }}.artifacts.runs import list_runs
from {{ cookiecutter.package_name }}.cli import app, load_entrypoint
from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.settings import PACKAGE, Settings, StorageConfig, SyntheticConfig, load_settings

pytestmark = pytest.mark.unit

# The flows as a worker loads them: by file path, from the project root.
LANDING_RESOURCE = load_entrypoint("flows/schedule.py:LANDING_RESOURCE")
build_deployments = load_entrypoint("flows/schedule.py:build_deployments")
DATASET_RESOURCE = load_entrypoint("flows/monitoring.py:DATASET_RESOURCE")
_wait_for_run, served, _spawn, _stop = (
    load_entrypoint(f"flows/simulation.py:{name}") for name in ("_wait_for_run", "served", "_spawn", "_stop")
)
_free_port, _wait_healthy = (
    load_entrypoint(f"flows/server.py:{name}") for name in ("free_port", "wait_healthy")
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT = PROJECT_ROOT / "configs" / "default.yaml"
EVENTS = generate(SyntheticConfig(n_users=300, n_items=200, n_interactions=6_000), seed=1)
LATER = generate(SyntheticConfig(n_users=300, n_items=200, n_interactions=1_500), seed=2).with_columns(
    pl.col("timestamp") + 86_400 * 200
)


def _settings(tmp_path: Path) -> Settings:
    return load_settings(
        [DEFAULT],
        {
            "data": {"synthetic": {"n_users": 300, "n_items": 200, "n_interactions": 6_000}},
            "storage": {"uri": str(tmp_path / "artifacts")},
            "ingest": {
                "landing": str(tmp_path / "landing"),
                "quarantine": str(tmp_path / "quarantine"),
                "settle_seconds": 1,
            },
            "deploy": {"pipeline_cron": "15 2 * * *", "monitor_cron": "*/30 * * * *"},
        },
    )


def test_deployments_carry_schedules_triggers_and_settings(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    parameters = {"config": settings.resolved()}
    nightly, hourly, on_new_data, on_drift = build_deployments(settings, parameters)
    assert [d.name for d in (nightly, hourly, on_new_data, on_drift)] == [
        "nightly", "hourly", "on-new-data", "on-drift"
    ]  # fmt: skip
    assert nightly.schedules[0].schedule.cron == "15 2 * * *"
    assert hourly.schedules[0].schedule.cron == "*/30 * * * *"
    assert nightly.parameters == {**parameters, "reason": "schedule"}
    (new_data,) = on_new_data.triggers
    assert new_data.expect == {settings.deploy.new_data_event}
    assert new_data.parameters["path"] == "{" + "{ event.payload.path }" + "}"
    assert new_data.parameters["config"] == parameters["config"]
    (drift,) = on_drift.triggers
    assert drift.expect == {settings.deploy.drift_event}
    assert drift.parameters["reason"] == "drift"
    assert not on_new_data.schedules and not on_drift.schedules


def _declared(deployment: Any) -> dict[str, Any]:
    """What a deployment of `serve` declares, in prefect.yaml's terms."""
    return {
        "name": deployment.name,
        "entrypoint": deployment.entrypoint,
        "parameters": deployment.parameters,
        "schedules": [
            {"cron": s.schedule.cron, "timezone": s.schedule.timezone, "active": s.active}
            for s in deployment.schedules
        ],
        "triggers": [
            {
                "name": t.name,
                "expect": sorted(t.expect),
                "match": t.match.model_dump(),
                "parameters": t.parameters,
                "enabled": t.enabled,
            }
            for t in deployment.triggers
        ],
    }


def test_prefect_yaml_declares_the_same_deployments_as_serve() -> None:
    """One definition: `serve` (flows/schedule.py) and deployments/prefect.yaml agree field for field."""
    declared = yaml.safe_load((PROJECT_ROOT / "deployments" / "prefect.yaml").read_text())["deployments"]
    from_yaml = [
        {
            "name": d["name"],
            "entrypoint": d["entrypoint"],
            "parameters": d.get("parameters", {}),
            "schedules": d.get("schedules", []),
            "triggers": [
                {k: v for k, v in t.items() if k != "type"} | {"expect": sorted(t["expect"])}
                for t in d.get("triggers", [])
            ],
        }
        for d in declared
    ]
    defaults = load_settings([DEFAULT])
    served_ones = build_deployments(defaults, {"config_files": ["configs/default.yaml"]})
    assert from_yaml == [_declared(d) for d in served_ones]
    for d in declared:
        assert d["work_pool"]["name"] == "local-process"
        path, _, function = d["entrypoint"].partition(":")
        assert (PROJECT_ROOT / path).is_file()
        assert load_entrypoint(d["entrypoint"]).name == function.replace("_", "-")  # a flow, loadable


def _copy_project(target: Path) -> Path:
    """The project's own files a worker needs (configs, flows, deployments), in another folder: the package
    stays installed where it is, as in a second checkout of the project."""
    for part in ("configs", "flows", "deployments"):
        shutil.copytree(PROJECT_ROOT / part, target / part, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _tail(log: Path) -> str:
    return log.read_text()[-4000:] if log.is_file() else ""


def _wait_final(client: Any, run_id: Any, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(run_id)
        if run.state is not None and run.state.is_final():
            return run
        time.sleep(1)
    raise TimeoutError(f"flow run {run_id} did not finish within {timeout:.0f}s")


@pytest.fixture
def team_databases(request: pytest.FixtureRequest) -> dict[str, str]:
    """The team set-up's databases where PostgreSQL is installed (always in CI): the Prefect server's and the
    registry's, each new; elsewhere {} (the server on SQLite, the registry in the store)."""
    try:
        create = request.getfixturevalue("postgres_database")
    except pytest.skip.Exception:
        return {}
    return {"prefect": create("asyncpg"), "registry": create("psycopg")}


@pytest.mark.e2e
def test_team_path_with_a_real_worker_runs_every_deployment(
    tmp_path: Path, team_databases: dict[str, str]
) -> None:
    """The README's team path, verbatim: `prefect server start`, work_pool.py, `prefect deploy --all`,
    `prefect worker start`, from a copy of the project. The nightly retrain, the new-data event (sent with
    curl as the README shows), the monitor and the drift event each run to completion on the worker, and the
    worker's task results are the ones the CLI finds (one result store)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    project = _copy_project(tmp_path / "project")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    prefix = f"{PACKAGE.upper()}_"
    env = {
        **os.environ,
        "PREFECT_API_URL": url,
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # pick runs up promptly (default 10 s)
        "PYTHONPATH": str(PROJECT_ROOT),  # the installed package (flows/ come from the copy, the cwd)
        # The worker's settings come from configs/default.yaml and its environment, as in compose.yaml.
        f"{prefix}DATA__SYNTHETIC__N_USERS": "300",
        f"{prefix}DATA__SYNTHETIC__N_ITEMS": "200",
        f"{prefix}DATA__SYNTHETIC__N_INTERACTIONS": "6000",
        f"{prefix}STORAGE__URI": "artifacts",  # the copy's own folder, whatever the bake's default store
    }
    server_env = {**env, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    if team_databases:
        server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = team_databases["prefect"]
        # As the README sets them: the URL without its password, the password in a variable of its own.
        registry = make_url(team_databases["registry"])
        env[f"{prefix}REGISTRY__URL"] = (
            f"{registry.drivername}://{registry.username}@{registry.host}:{registry.port}/{registry.database}"
        )
        env[f"{prefix}REGISTRY__PASSWORD"] = str(registry.password)
    logs = tmp_path / "logs"
    server = _spawn(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        server_env,
        project,
        logs / "server.log",
    )
    worker = None
    try:
        _wait_healthy(url, timeout=180)
        for command in (
            [sys.executable, "deployments/work_pool.py", "local-process"],
            [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"]
            + ["--prefect-file", "deployments/prefect.yaml"],
        ):
            done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        worker = _spawn(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "local-process", "--limit", "1"],
            env,
            project,
            logs / "worker.log",
        )
        with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as client:

            def finished(run_id: Any) -> Any:
                run = _wait_final(client, run_id)
                assert run.state.is_completed(), (run.name, run.state, _tail(logs / "worker.log"))
                return run

            started = time.monotonic()
            finished(run_deployment("retrain/nightly", timeout=0).id)
            nightly_seconds = time.monotonic() - started
            store = project / "artifacts"
            assert list((store / "prefect-results").iterdir()), "task results outside the artifact store"
            assert len(list_runs(open_store(StorageConfig(uri=str(store))))) == 1

            # The CLI, in the same project, finds the worker's task results: nothing is computed again.
            cli = subprocess.run(
                [sys.executable, "-m", PACKAGE, "run", "--set", "promotion.enabled=false"],
                cwd=project, env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert cli.returncode == 0, cli.stdout[-3000:] + cli.stderr[-3000:]
            # (inspect-inputs always runs: it hashes the input files)
            assert "tasks: 1 ran, 5 cached (ingest, validate, split, train, evaluate)" in cli.stdout, (
                cli.stdout
            )

            # A batch lands; another system announces it with curl, as the README shows.
            landing = project / "landing"
            landing.mkdir()
            partial = landing / ".batch-0042.csv.partial"
            EVENTS.slice(0, 2_000).with_columns(pl.col("timestamp") + 86_400 * 200).write_csv(partial)
            partial.rename(landing / "batch-0042.csv")
            landed, emitted = time.monotonic(), datetime.now(UTC)
            body = [
                {
                    "id": str(uuid.uuid4()),
                    "occurred": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "event": f"{PACKAGE}.data.arrived",
                    "resource": {"prefect.resource.id": f"{PACKAGE}.landing.batch-0042.csv"},
                    "payload": {"path": str(landing / "batch-0042.csv")},
                }
            ]
            curl = [
                "curl",
                "-sS",
                "-f",
                "-X",
                "POST",
                f"{url}/events",
                "-H",
                "Content-Type: application/json",
            ]
            sent = subprocess.run(curl + ["-d", json.dumps(body)], capture_output=True, text=True, timeout=30)
            assert sent.returncode == 0, sent.stderr
            on_new_data = client.read_deployment_by_name("ingest-and-train/on-new-data").id
            ingested = _wait_for_run(client, on_new_data, emitted, timeout=300)
            landing_to_trained = time.monotonic() - landed
            assert ingested.state.is_completed(), (ingested.state, _tail(logs / "worker.log"))
            assert ingested.parameters["path"].endswith("batch-0042.csv")
            assert not (landing / "batch-0042.csv").exists()

            monitored = finished(run_deployment("monitor/hourly", timeout=0).id)

            emitted = datetime.now(UTC)
            emit_event(
                event=f"{PACKAGE}.drift.detected",
                resource={"prefect.resource.id": DATASET_RESOURCE},
                payload={"reasons": ["test"]},
            )
            on_drift = client.read_deployment_by_name("retrain/on-drift").id
            retrained = _wait_for_run(client, on_drift, emitted, timeout=300)
            assert retrained.state.is_completed(), (retrained.state, _tail(logs / "worker.log"))
            assert retrained.parameters["reason"] == "drift"

            # No flow run that ran (the schedules also made future ones) crashed or failed.
            ran = [r for r in client.read_flow_runs() if r.state is not None and r.state.is_final()]
            assert len(ran) >= 5 and all(r.state.is_completed() for r in ran), [
                (r.name, r.state.name, r.state.message) for r in ran
            ]
            EventsWorker.drain_all(timeout=30, at_exit=False)
        print(
            f"worker: nightly retrain {nightly_seconds:.1f} s; file landed -> ingest-and-train completed "
            f"{landing_to_trained:.1f} s; monitor {monitored.total_run_time.total_seconds():.1f} s run time"
        )
    finally:
        if worker is not None:
            _stop(worker)
        _stop(server)


@pytest.mark.e2e
def test_new_data_event_trains_and_drift_event_retrains(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.events import emit_event

    settings = _settings(tmp_path)
    landing = Path(settings.ingest.landing)
    landing.mkdir(parents=True)
    EVENTS.write_csv(landing / "first.csv")
    logs = tmp_path / "logs"
    with served(settings, PROJECT_ROOT, lambda _: None, logs) as url, get_client(sync_client=True) as client:
        assert url.startswith("http://127.0.0.1:")
        on_new_data = client.read_deployment_by_name("ingest-and-train/on-new-data").id
        on_drift = client.read_deployment_by_name("retrain/on-drift").id

        # The new-data event as an external system raises it (README): a POST to the server's events API.
        emitted = datetime.now(UTC)
        event = {
            "id": str(uuid.uuid4()),
            "occurred": emitted.isoformat(),
            "event": settings.deploy.new_data_event,
            "resource": {"prefect.resource.id": f"{LANDING_RESOURCE}.first.csv"},
            "payload": {"path": str((landing / "first.csv").resolve())},
        }
        assert httpx.post(f"{url}/events", json=[event], timeout=10).status_code == 204
        run = _wait_for_run(client, on_new_data, emitted, timeout=300)
        assert run.state.is_completed(), (run.state.message, (logs / "serve.log").read_text()[-3_000:])
        assert run.parameters["path"].endswith("first.csv")  # rendered from the event by the server
        store = open_store(settings.storage)
        assert current_snapshot(store)["rows"] == 6_000 and not list(landing.iterdir())
        assert [v.version for v in open_registry(settings.registry, settings.storage).versions()] == [1]

        # `watch` announces a file that landed (once its size held still), as it would in production. New
        # events (another seed), later than the first batch: re-timed copies of old pairs would leave the
        # implicit models unchanged, and the registry would rightly reuse their version.
        LATER.write_csv(landing / "second.csv")
        emitted = datetime.now(UTC)
        watched = CliRunner().invoke(
            app,
            ["watch", "--once", "--interval", "0.5", "--config", str(DEFAULT)]
            + [f"--set=ingest.landing={landing}", f"--set=storage.uri={settings.storage.uri}"],
        )
        assert watched.exit_code == 0 and "announced second.csv" in watched.output, watched.output
        run = _wait_for_run(client, on_new_data, emitted, timeout=300)
        assert run.state.is_completed(), (run.state.message, (logs / "serve.log").read_text()[-3_000:])
        assert current_snapshot(store)["rows"] == 7_500 and LandingZone(settings.ingest).waiting() == []
        again = CliRunner().invoke(
            app,
            [
                "watch",
                "--once",
                "--interval",
                "0.1",
                "--config",
                str(DEFAULT),
                f"--set=ingest.landing={landing}",
            ],
        )
        assert again.exit_code == 0 and "announced" not in again.output  # nothing new landed

        time.sleep(1)
        emitted = datetime.now(UTC)
        emit_event(
            event=settings.deploy.drift_event,
            resource={"prefect.resource.id": DATASET_RESOURCE},
            payload={"reasons": ["test"]},
        )
        run = _wait_for_run(client, on_drift, emitted, timeout=300)
        assert run.state.is_completed(), (run.state.message, (logs / "serve.log").read_text()[-3_000:])
        assert run.parameters["reason"] == "drift"
        # Runs started from the flows `serve` holds, forked warm, not a new interpreter loading the flow file.
        assert "Downloading flow code from storage" not in (logs / "serve.log").read_text()
    assert len(open_registry(settings.registry, settings.storage).versions()) == 3
    first, second, retrained = list_runs(store)
    assert [r.tags["trigger"] for r in (first, second, retrained)] == ["new-data", "new-data", "drift"]
    # The retrain on drift ran with deploy.drift_overrides: more of the newest events in training.
    assert second.config["split"]["test_fraction"] == 0.2
    assert retrained.config["split"]["test_fraction"] == 0.1
    assert retrained.dataset.id == second.dataset.id != first.dataset.id


@pytest.mark.e2e
@pytest.mark.usefixtures("prefect_server")
def test_a_second_serve_on_the_same_server_runs_with_its_own_settings(tmp_path: Path) -> None:
    """A `serve` that ended leaves its deployments and automations on the server; the next `serve` (as a
    second `simulate` on the project's server) replaces them, and `served` yields only after it has: a batch
    announced at once is taken in with the new settings, not looked for in the old landing zone."""
    from prefect.client.orchestration import get_client

    emit_new_data = load_entrypoint("flows/schedule.py:emit_new_data")
    before, after = _settings(tmp_path / "before"), _settings(tmp_path / "after")
    with served(before, PROJECT_ROOT, lambda _: None, tmp_path / "before" / "logs"):
        pass
    landing = Path(after.ingest.landing)
    landing.mkdir(parents=True)
    EVENTS.write_csv(landing / "first.csv")
    logs = tmp_path / "after" / "logs"
    with served(after, PROJECT_ROOT, lambda _: None, logs), get_client(sync_client=True) as client:
        emitted = datetime.now(UTC)
        emit_new_data(after, str((landing / "first.csv").resolve()), (landing / "first.csv").stat().st_size)
        on_new_data = client.read_deployment_by_name("ingest-and-train/on-new-data").id
        run = _wait_for_run(client, on_new_data, emitted, timeout=300)
        assert run.state.is_completed(), (run.state.message, (logs / "serve.log").read_text()[-3_000:])
    assert run.parameters["config"]["ingest"]["landing"] == str(after.ingest.landing)
    assert current_snapshot(open_store(after.storage))["rows"] == 6_000


WARM_PROBE = """
import json, os, sys
from prefect import flow
from prefect.flow_engine import run_flow_in_subprocess
from prefect.runtime import flow_run
from flows.schedule import _fork_runs_warm

@flow
def probe(out: str) -> None:
    heavy = [m for m in ("great_expectations", "torch", "evidently") if m in sys.modules]
    seen = {"pid": os.getpid(), "parent": os.getppid(), "run": flow_run.get_id(), "imported": heavy}
    with open(out, "w") as file:
        json.dump(seen, file)

_fork_runs_warm()
process = run_flow_in_subprocess(probe, parameters={"out": sys.argv[1]})  # as `serve` starts a run
process.join()
print(json.dumps({"exitcode": process.exitcode, "serve": os.getpid()}))
"""


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_server")
def test_served_runs_start_forked_from_a_process_that_imported_their_libraries(tmp_path: Path) -> None:
    """`serve` has Prefect start its runs from the fork server preloaded with flows/warm.py: a run begins
    with GX, torch and Evidently imported (a flow file alone imports none of them, test_imports.py), in a
    process of its own that is not a child of `serve`, and reports to the server as any run does."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    out = tmp_path / "seen.json"
    done = subprocess.run(
        [sys.executable, "-c", WARM_PROBE, str(out)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3_000:]
    started = json.loads(done.stdout.strip().splitlines()[-1])
    seen = json.loads(out.read_text())
    assert started["exitcode"] == 0
    assert seen["imported"] == ["great_expectations", "torch", "evidently"]
    assert seen["pid"] != started["serve"] and seen["parent"] != started["serve"]  # forked by the fork server
    assert seen["run"] is not None
