"""Secrets never shown: a registry password given in the URL on the command line (userinfo or query) reaches
the flow, which registers in a real PostgreSQL registry, while `config`, the output, both manifest copies,
the report and the flow run's parameters and logs read back from the Prefect API never hold it. Then the
registry's tables are dropped: refused, and rebuilt from the store on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from {{ cookiecutter.package_name }}.artifacts import open_store
from {{ cookiecutter.package_name }}.artifacts import runs as runs_catalog
from {{ cookiecutter.package_name }}.artifacts.manifest import PipelineResult
from {{ cookiecutter.package_name }}.artifacts.registry import CHAMPION, Registry, registry_problems
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, RegistryConfig, Settings, redact_url

PACKAGE = "{{ cookiecutter.package_name }}"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("prefect_server")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "COLUMNS": "200"}
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())  # the session's server, read back below
    env.pop(f"{ENV_PREFIX}REGISTRY__PASSWORD", None)  # the command line is the only place it is given
    return subprocess.run(
        [sys.executable, "-m", PACKAGE, *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_secrets_in_the_url_move_out_of_every_dump_and_come_back_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = RegistryConfig(
        url="postgresql+psycopg://reg@db:5432/r?password=pw1&sslpassword=pw2&sslmode=require"
    )
    assert cfg.model_dump(mode="json") == {"url": "postgresql+psycopg://reg@db:5432/r?sslmode=require"}
    assert "pw" not in redact_url("postgresql+psycopg://reg:pw1@db/r?sslpassword=pw2")
    settings = Settings(registry=cfg)
    assert "pw1" not in json.dumps(settings.resolved()) and "pw2" not in json.dumps(settings.resolved())
    # A flow rebuilds its settings from `resolved()` and the environment the entry point set.
    for name, value in settings.secret_environment().items():
        monkeypatch.setenv(name, value)
    rebuilt = Settings.from_resolved(settings.resolved())
    assert rebuilt.registry.password is not None and rebuilt.registry.password.get_secret_value() == "pw1"
    assert rebuilt.registry.secret_query["sslpassword"].get_secret_value() == "pw2"


@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_a_password_given_in_the_registry_url_registers_and_is_never_shown(
    form: str, postgres_database: Callable[[str], str], tmp_path: Path
) -> None:
    import psycopg
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    url = make_url(postgres_database("psycopg"))
    password = url.password
    assert password
    without = url._replace(password=None)
    given = url if form == "userinfo" else without.update_query_dict({"password": password})
    store_dir = tmp_path / "artifacts"
    options = [
        "--set", f"registry.url={given.render_as_string(hide_password=False)}",
        "--set", f"storage.uri={store_dir}", "--set", "data.synthetic.n_users=300",
        "--set", "data.synthetic.n_items=200", "--set", "data.synthetic.n_interactions=5000",
    ]  # fmt: skip

    shown = _cli("config", *options)
    assert shown.returncode == 0, shown.stderr
    assert password not in shown.stdout + shown.stderr
    assert json.loads(shown.stdout)["settings"]["registry"]["url"] == without.render_as_string()
    ran = _cli("run", "--model", "popularity", *options)
    assert ran.returncode == 0, ran.stdout[-3_000:] + ran.stderr[-3_000:]
    assert "promoted to champion" in ran.stdout
    assert password not in ran.stdout + ran.stderr

    # Nothing in the store holds it: both manifest copies, the report, the status, every object.
    store = open_store(Settings(storage={"uri": str(store_dir)}).storage)
    (run,) = runs_catalog.list_runs(store)
    assert runs_catalog.run_state(runs_catalog.read_status(store, run.run_id)) == "completed"
    files = [p for p in store_dir.rglob("*") if p.is_file()]
    assert any(p.name == "report.md" for p in files) and sum(p.name == "manifest.json" for p in files) == 1
    manifests = [p for p in files if p.suffix == ".json" and b'"config_fingerprint"' in p.read_bytes()]
    assert len(manifests) == 2, manifests  # by name and content-addressed (the dashboard embeds one too)
    assert not [p for p in files if password.encode() in p.read_bytes()]

    # Nor does Prefect: the flow run's parameters and its logs, as its API returns them.
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(uuid.UUID(run.run_id))
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))
    parameters = json.dumps(flow_run.parameters)
    assert without.render_as_string() in parameters and password not in parameters
    assert logs and not [log for log in logs if password in log.message]

    # The flow reached the database with the password: the run's model is the champion there.
    registry = Registry(url.render_as_string(hide_password=False))
    assert registry.get(CHAMPION).run_id == run.run_id
    if form == "query":
        return

    # Dropped tables on PostgreSQL: refused with the rebuild command, then rebuilt from the store.
    with psycopg.connect(url._replace(drivername="postgresql").render_as_string(hide_password=False)) as conn:
        conn.execute("DROP TABLE aliases, decisions, drift_events, alias_moves, model_versions")
    refused = _cli("models", "list", *options)
    assert refused.returncode == 2 and "models rebuild" in refused.stderr, refused.stderr
    assert "1 runs registered models" in refused.stderr and password not in refused.stderr
    rebuilt = _cli("models", "rebuild", *options)
    assert rebuilt.returncode == 0 and "rebuilt 1 versions and 1 decisions" in rebuilt.stdout, rebuilt.stderr
    again = Registry(url.render_as_string(hide_password=False))
    assert again.get(CHAMPION).run_id == run.run_id
    assert registry_problems(again.url, store) == []
    # The next version number follows the rebuilt ones (PostgreSQL's sequence was moved on).
    other_model = run.artifacts["model"].model_copy(update={"id": "other-model"})
    outputs = {
        "manifest_id": "m",
        "manifest": "runs/later/manifest.json",
        "report": "",
        "lineage": "",
        "store": "",
    }
    later = PipelineResult.model_validate(
        {**run.document(), "run_id": "later", "outputs": outputs}
        | {"artifacts": {**run.document()["artifacts"], "model": other_model.model_dump()}}
    )
    assert again.register(later, actor="test").version == 2
