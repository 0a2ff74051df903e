"""The team stack of deployments/compose.yaml, checked without Docker: the worker's environment, read by the
project's own settings loader, points at the stack's services; the images and the work pool agree with the
project's pins and deployments/prefect.yaml."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from {{ cookiecutter.package_name }}.artifacts import open_store
from {{ cookiecutter.package_name }}.artifacts.registry import registry_url
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, Settings, load_settings

pytestmark = pytest.mark.unit

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = PROJECT_ROOT / "deployments"
DEFAULT = PROJECT_ROOT / "configs" / "default.yaml"
COMPOSE = yaml.safe_load((DEPLOYMENTS / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
# Compose's `${NAME:-default}`; with nothing set in the environment the development defaults apply.
_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _interpolated(value: Any) -> str:
    return _VARIABLE.sub(lambda m: m.group(2) or "", str(value))


def _environment(service: str) -> dict[str, str]:
    return {name: _interpolated(value) for name, value in SERVICES[service]["environment"].items()}


def _command(service: str) -> list[str]:
    """The service's command as words (a `sh -c` script split into its words)."""
    command = [_interpolated(word) for word in SERVICES[service]["command"]]
    script = command[0] in ("sh", "/bin/sh") or "entrypoint" in SERVICES[service]
    return shlex.split(command[-1]) if script else command


def _option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def _databases_created() -> set[str]:
    """The databases the postgres image creates on a new volume: POSTGRES_DB and the init scripts'."""
    created = {_environment("postgres")["POSTGRES_DB"]}
    for mount in SERVICES["postgres"]["volumes"]:
        source, target = mount.split(":")[:2]
        if target.startswith("/docker-entrypoint-initdb.d/"):
            script = (DEPLOYMENTS / source).read_text()
            created |= set(re.findall(r"CREATE DATABASE\s+(\w+)", script, flags=re.IGNORECASE))
    return created


def _pin(package: str) -> str:
    lines = (PROJECT_ROOT / "requirements" / f"py{_python()}.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if "==" in line)[package]


def _python() -> str:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    return pyproject["project"]["requires-python"].removeprefix(">=")


@pytest.fixture
def worker_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What a deployment's run loads in the worker container: default.yaml, then the worker's environment."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in _environment("worker").items():
        monkeypatch.setenv(name, value)
    return load_settings([DEFAULT])


def test_the_stack_has_its_services_and_waits_for_healthy_dependencies() -> None:
    assert {"postgres", "prefect-server", "minio", "create-bucket", "worker"} <= set(SERVICES)
    for name, service in SERVICES.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES, (name, dependency)
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], dependency
    assert SERVICES["worker"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "prefect-server": {"condition": "service_healthy"},
        "create-bucket": {"condition": "service_completed_successfully"},
    }


def test_worker_stores_artifacts_in_the_minio_bucket(worker_settings: Settings) -> None:
    storage = worker_settings.storage
    uri = urlsplit(storage.uri)
    assert uri.scheme == "s3"
    made = _command("create-bucket")
    assert f"store/{uri.netloc}" in made[made.index("mb") :]
    endpoint = urlsplit(storage.endpoint_url or "")
    assert endpoint.hostname == "minio"
    assert f":{endpoint.port}" == _option(_command("minio"), "--address")
    minio = _environment("minio")
    assert storage.access_key_id is not None and storage.secret_access_key is not None
    assert storage.access_key_id.get_secret_value() == minio["MINIO_ROOT_USER"]
    assert storage.secret_access_key.get_secret_value() == minio["MINIO_ROOT_PASSWORD"]
    store = open_store(storage)  # nothing is contacted until the first read or write
    assert store.root == f"{uri.netloc}{uri.path}"


def test_worker_registry_is_a_postgres_database_of_the_stack(worker_settings: Settings) -> None:
    url = make_url(registry_url(worker_settings.registry, worker_settings.storage))
    postgres = _environment("postgres")
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port or 5432) == ("postgres", 5432)
    assert url.database in _databases_created()
    assert (url.username, url.password) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])
    # The password reaches the engine only: a run's manifest (resolved settings) never holds it.
    assert postgres["POSTGRES_PASSWORD"] not in json.dumps(worker_settings.resolved())


def test_prefect_server_keeps_its_state_in_postgres() -> None:
    url = make_url(_environment("prefect-server")["PREFECT_API_DATABASE_CONNECTION_URL"])
    postgres = _environment("postgres")
    assert url.drivername == "postgresql+asyncpg"
    assert (url.host, url.port or 5432) == ("postgres", 5432)
    assert url.database == postgres["POSTGRES_DB"] and url.database in _databases_created()
    assert (url.username, url.password) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])


def test_worker_talks_to_the_prefect_server() -> None:
    api = urlsplit(_environment("worker")["PREFECT_API_URL"])
    server = _command("prefect-server")
    assert server[:3] == ["prefect", "server", "start"] and _option(server, "--host") == "0.0.0.0"
    assert (api.hostname, str(api.port), api.path) == ("prefect-server", _option(server, "--port"), "/api")


def test_worker_serves_the_work_pool_of_prefect_yaml() -> None:
    declared = yaml.safe_load((DEPLOYMENTS / "prefect.yaml").read_text())
    pools = {deployment["work_pool"]["name"] for deployment in declared["deployments"]}
    words = _command("worker")
    assert pools == {_option(words, "--pool")}
    assert words[words.index("deployments/work_pool.py") + 1] in pools


def test_work_pool_runs_flows_in_the_worker_directory() -> None:
    """Without it a process worker starts each run in a new temporary directory, away from the entrypoints."""
    from prefect.utilities.templating import apply_values
    from prefect.workers.process import ProcessWorker

    spec = importlib.util.spec_from_file_location("work_pool", DEPLOYMENTS / "work_pool.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def job_of(template: dict[str, Any]) -> Any:
        """The job configuration of a run that sets no job variables (what the worker computes)."""
        properties = template["variables"]["properties"]
        defaults = {name: spec["default"] for name, spec in properties.items() if "default" in spec}
        return ProcessWorker.job_configuration(**apply_values(template["job_configuration"], defaults))

    default = ProcessWorker.get_default_base_job_template()
    assert job_of(default).working_dir is None  # a temporary directory per run
    template = module.with_working_dir(default)
    assert job_of(template).working_dir == Path(".")
    assert module.with_working_dir(template) == template


def test_worker_image_installs_the_pinned_set() -> None:
    assert (DEPLOYMENTS / SERVICES["worker"]["build"]["context"]).resolve() == PROJECT_ROOT
    dockerfile = (PROJECT_ROOT / SERVICES["worker"]["build"]["dockerfile"]).read_text()
    assert f"FROM python:{_python()}-slim" in dockerfile
    assert "WORKDIR /app" in dockerfile  # the worker's directory, where the flow runs start
    install = " ".join(dockerfile.replace("\\\n", " ").split())
    assert f"pip install -c requirements/py{_python()}.txt" in install
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in install
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    assert {".venv", "artifacts", "data"} <= set(ignored)


def test_prefect_image_is_the_pinned_prefect_on_the_project_python() -> None:
    image = SERVICES["prefect-server"]["image"]
    assert image == f"prefecthq/prefect:{_pin('prefect')}-python{_python()}"
    declared = yaml.safe_load((DEPLOYMENTS / "prefect.yaml").read_text())
    assert str(declared["prefect-version"]) == _pin("prefect")
