"""The served deployments: their schedules and triggers, and, against a real Prefect server started on
127.0.0.1 with `serve` in its own process, the new-data event running ingest + pipeline and the drift event
running a retrain. `served` stops both processes at the end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from {{ cookiecutter.package_name }}.artifacts import open_store
from {{ cookiecutter.package_name }}.artifacts.landing import LandingZone, current_snapshot
from {{ cookiecutter.package_name }}.artifacts.registry import open_registry
from {{ cookiecutter.package_name }}.artifacts.runs import list_runs
from {{ cookiecutter.package_name }}.cli import app, load_entrypoint
from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.settings import Settings, SyntheticConfig, load_settings

# The flows as a worker loads them: by file path, from the project root.
LANDING_RESOURCE = load_entrypoint("flows/schedule.py:LANDING_RESOURCE")
build_deployments = load_entrypoint("flows/schedule.py:build_deployments")
DATASET_RESOURCE = load_entrypoint("flows/monitor.py:DATASET_RESOURCE")
_wait_for_run = load_entrypoint("flows/simulate.py:_wait_for_run")
served = load_entrypoint("flows/simulate.py:served")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT = PROJECT_ROOT / "configs" / "default.yaml"
EVENTS = generate(SyntheticConfig(n_users=300, n_items=200, n_interactions=6_000), seed=1)


def _settings(tmp_path: Path) -> Settings:
    return load_settings(
        [DEFAULT],
        {
            "data": {"synthetic": {"n_users": 300, "n_items": 200, "n_interactions": 6_000}},
            "storage": {"uri": str(tmp_path / "artifacts")},
            "ingest": {"landing": str(tmp_path / "landing"), "quarantine": str(tmp_path / "quarantine")},
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


def test_prefect_yaml_declares_the_same_deployments() -> None:
    declared = yaml.safe_load((PROJECT_ROOT / "deployments" / "prefect.yaml").read_text())["deployments"]
    by_name = {d["name"]: d for d in declared}
    assert set(by_name) == {"nightly", "hourly", "on-new-data", "on-drift"}
    defaults = load_settings([DEFAULT]).deploy
    assert by_name["nightly"]["schedules"][0]["cron"] == defaults.pipeline_cron
    assert by_name["hourly"]["schedules"][0]["cron"] == defaults.monitor_cron
    assert by_name["on-new-data"]["triggers"][0]["expect"] == [defaults.new_data_event]
    assert by_name["on-drift"]["triggers"][0]["expect"] == [defaults.drift_event]
    for d in declared:
        module, _, function = d["entrypoint"].partition(":")
        assert (PROJECT_ROOT / module).is_file() and function, d["entrypoint"]


@pytest.mark.usefixtures("prefect_server")
def test_prefect_deploy_registers_every_deployment_with_a_real_server(tmp_path: Path) -> None:
    """The documented team path: create the work pool, then `prefect deploy --all` from the project root."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    pool = [sys.executable, "deployments/work_pool.py", "local-process"]
    deploy = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"]
    deploy += ["--prefect-file", "deployments/prefect.yaml"]
    for command in (pool, deploy):
        done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    with get_client(sync_client=True) as client:
        found = {}
        for name in ("retrain/nightly", "monitor/hourly", "ingest-and-train/on-new-data", "retrain/on-drift"):
            found[name] = client.read_deployment_by_name(name)
        working_dir = client.read_work_pool("local-process").base_job_template["variables"]["properties"]
    assert {d.work_pool_name for d in found.values()} == {"local-process"}
    defaults = load_settings([DEFAULT]).deploy
    assert found["retrain/nightly"].schedules[0].schedule.cron == defaults.pipeline_cron
    assert found["monitor/hourly"].schedules[0].schedule.cron == defaults.monitor_cron
    assert working_dir["working_dir"]["default"] == "."


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

        # `watch` announces a file that landed (once its size held still), as it would in production.
        EVENTS.slice(0, 1_500).with_columns(pl.col("timestamp") + 86_400 * 200).write_csv(
            landing / "second.csv"
        )
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
    assert len(open_registry(settings.registry, settings.storage).versions()) == 3
    first, second, retrained = list_runs(store)
    assert [r["tags"]["trigger"] for r in (first, second, retrained)] == ["new-data", "new-data", "drift"]
    # The retrain on drift ran with deploy.drift_overrides: more of the newest events in training.
    assert second["config"]["split"]["test_fraction"] == 0.2
    assert retrained["config"]["split"]["test_fraction"] == 0.1
    assert retrained["dataset"]["id"] == second["dataset"]["id"] != first["dataset"]["id"]
