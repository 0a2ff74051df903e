"""The team set-up without containers: the pipeline against a Prefect server whose database is PostgreSQL,
with the model registry on the same PostgreSQL server (started by deployments/postgres-local.sh)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prefect.events.worker import EventsWorker

from {{ cookiecutter.package_name }}.artifacts import open_store
from {{ cookiecutter.package_name }}.artifacts.registry import CHAMPION, Registry
from {{ cookiecutter.package_name }}.cli import load_entrypoint
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, load_settings

# The flows as a worker loads them: by file path, from the project root.
pipeline = load_entrypoint("flows/pipeline.py:pipeline")
_spawn, _stop = (load_entrypoint(f"flows/simulation.py:{name}") for name in ("_spawn", "_stop"))
_free_port, _wait_healthy = (
    load_entrypoint(f"flows/server.py:{name}") for name in ("free_port", "wait_healthy")
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def prefect_on_postgres(postgres_database: Callable[[str], str], tmp_path: Path) -> Iterator[str]:
    """A Prefect server on 127.0.0.1 whose database is a new PostgreSQL database; yields the database URL."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    database = postgres_database("asyncpg")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_DATABASE_CONNECTION_URL": database,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    server = _spawn(command, env, PROJECT_ROOT, tmp_path / "prefect-server.log")
    try:
        _wait_healthy(url, timeout=120)
        # The process-wide events worker is bound to the server it first sent to (an earlier test's): retire
        # it, so task-run events (how Prefect records task runs) go to this server.
        EventsWorker.drain_all(timeout=30, at_exit=False)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield database
            finally:
                # Deliver this process's events while the server runs; retire the events worker bound to it.
                EventsWorker.drain_all(timeout=30, at_exit=False)
    finally:
        _stop(server)


def test_pipeline_runs_on_a_postgresql_prefect_server_and_registry(
    prefect_on_postgres: str,
    postgres_database: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psycopg

    registry_url = postgres_database("psycopg")
    # The way a team configures it: the URL in config, the password from the environment only.
    user_and_host, _, database = registry_url.rpartition("/")
    password = user_and_host.split(":")[2].split("@")[0]
    monkeypatch.setenv(f"{ENV_PREFIX}REGISTRY__PASSWORD", password)
    settings = load_settings(
        [PROJECT_ROOT / "configs" / "default.yaml"],
        {
            "data": {"synthetic": {"n_users": 300, "n_items": 200, "n_interactions": 6_000}},
            "storage": {"uri": str(tmp_path / "artifacts")},
            "registry": {"url": registry_url.replace(f":{password}@", "@")},
            "model": {"name": "ease"},
        },
    )
    assert password not in str(settings.resolved())

    state = pipeline(settings.resolved(), return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary["promotion"]["promoted"] is True

    # Prefect kept the run, its tasks and its artifacts in PostgreSQL. Task runs arrive as events, which the
    # server writes shortly after: deliver this process's, then give the server a moment.
    EventsWorker.drain_all(timeout=30, at_exit=False)
    expected = {"ingest", "validate", "split", "train", "evaluate", "record", "register", "judge"}
    prefect_db = prefect_on_postgres.replace("postgresql+asyncpg://", "postgresql://", 1)
    deadline = time.monotonic() + 60
    with psycopg.connect(prefect_db, autocommit=True) as conn:
        while True:
            task_names = {
                row[0].rsplit("-", 1)[0]
                for row in conn.execute(
                    "select name from task_run where flow_run_id = %s and state_type = 'COMPLETED'",
                    (summary["run_id"],),
                )
            }
            if expected <= task_names or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        (flow_state,) = conn.execute(
            "select state_type from flow_run where id = %s", (summary["run_id"],)
        ).fetchone()
        keys = {
            row[0]
            for row in conn.execute("select key from artifact where flow_run_id = %s", (summary["run_id"],))
        }
    assert flow_state == "COMPLETED"
    assert expected <= task_names
    assert any(key and key.endswith("-report") for key in keys)

    # The registry is the PostgreSQL database: the run's model is the champion there, with its decision.
    registry = Registry(f"{user_and_host}/{database}")
    champion = registry.get(CHAMPION)
    assert champion.run_id == summary["run_id"]
    assert champion.model_id == summary["artifacts"]["model"]["id"]
    assert [d.promoted for d in registry.decisions(champion.version)] == [1]
    manifest = open_store(settings.storage).read_text(summary["outputs"]["manifest"])
    assert registry_url.replace(f":{password}@", "@") in manifest and password not in manifest
