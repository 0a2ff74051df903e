"""The project server's record and the `server` commands, without starting a server (tests/test_lifetime.py
starts real ones): which record names a running server, and what the commands say when none runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from {{ cookiecutter.package_name }}.cli import app, load_entrypoint

PROJECT_ROOT = Path(__file__).resolve().parents[1]
read_state, prefect_api = (load_entrypoint(f"flows/server.py:{n}") for n in ("read_state", "prefect_api"))

pytestmark = pytest.mark.unit


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project's flows as the working directory, with no configured Prefect API."""
    shutil.copytree(PROJECT_ROOT / "flows", tmp_path / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return tmp_path


def _record(project: Path, **fields: Any) -> Path:
    home = project / ".prefect"
    home.mkdir(exist_ok=True)
    state = {"url": "http://127.0.0.1:9/api", "pid": _gone_pid(), "created": 0.0, "home": str(home)}
    (home / "server.json").write_text(json.dumps({**state, "database": "", **fields}))
    return home


def _gone_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def test_a_record_names_a_running_server_only_with_its_pid_and_start_time(project: Path) -> None:
    import psutil

    home = _record(project, pid=os.getpid(), created=psutil.Process().create_time())
    assert read_state(home).is_running()
    _record(project, pid=os.getpid(), created=1.0)  # the pid, reused by another process
    assert not read_state(home).is_running()
    _record(project)  # a pid that is gone
    assert not read_state(home).is_running()


def test_a_record_copied_from_another_project_is_not_this_projects_server(project: Path) -> None:
    home = _record(project, home="/elsewhere/.prefect", pid=os.getpid())
    assert read_state(home) is None


def test_status_and_stop_when_no_server_runs(project: Path) -> None:
    status = CliRunner().invoke(app, ["server", "status"])
    assert status.exit_code == 1 and "no project Prefect server runs" in status.output
    _record(project)  # a dead server's record
    assert CliRunner().invoke(app, ["server", "status"]).exit_code == 1
    for _ in range(2):  # idempotent
        stopped = CliRunner().invoke(app, ["server", "stop"])
        assert stopped.exit_code == 0 and "no server ran" in stopped.output
    assert not (project / ".prefect" / "server.json").exists()  # the dead record is gone


def test_a_configured_api_wins(project: Path) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = "http://127.0.0.1:9/api"
    with temporary_settings(updates={PREFECT_API_URL: configured}), prefect_api(project) as url:
        assert url == configured
    assert not (project / ".prefect").exists()  # nothing started
    status = CliRunner().invoke(app, ["server", "status"], env={"PREFECT_API_URL": configured})
    assert f"PREFECT_API_URL is set ({configured})" in status.output


def test_the_project_servers_url_is_what_every_thread_reads_inside_the_block_only(project: Path) -> None:
    import threading

    from prefect.settings import get_current_settings

    api_url = load_entrypoint("flows/server.py:_api_url")
    url, before = "http://127.0.0.1:9/api", get_current_settings().api.url
    seen: list[tuple[str | None, Any]] = []

    def read() -> None:
        settings = get_current_settings()
        seen.append((settings.api.url, settings.flows.heartbeat_frequency))

    with api_url(url):
        read()
        # A thread of its own does not see the caller's context: it falls back to the global settings.
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
        assert os.environ["PREFECT_API_URL"] == url
    assert seen == [(url, None), (url, None)]  # and no heartbeat for the flow runs of this process
    assert get_current_settings().api.url == before and "PREFECT_API_URL" not in os.environ


def test_over_plain_http_prefects_clients_load_a_ca_file_of_one_certificate(project: Path) -> None:
    """Prefect loads its CA file into every API client it makes, whatever the URL's scheme: for a plain-HTTP
    server, one certificate instead of certifi's bundle (17 ms a client, five or six a command), in this
    process and in those it starts; one damaged is written again; an https server keeps the user's."""
    import ssl
    import threading

    from prefect.settings import PREFECT_API_SSL_CERT_FILE

    api_url = load_entrypoint("flows/server.py:_api_url")
    before, environment = PREFECT_API_SSL_CERT_FILE.value(), os.environ.get("PREFECT_API_SSL_CERT_FILE")

    def certificates(path: str) -> int:
        return ssl.create_default_context(cafile=path).cert_store_stats()["x509_ca"]

    seen: list[str | None] = []
    with api_url("http://127.0.0.1:9/api"):
        path = PREFECT_API_SSL_CERT_FILE.value()
        thread = threading.Thread(target=lambda: seen.append(PREFECT_API_SSL_CERT_FILE.value()))
        thread.start()
        thread.join()
        assert seen == [path] and os.environ["PREFECT_API_SSL_CERT_FILE"] == path  # and processes started
        assert certificates(path) == 1
    Path(path).write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIC")  # cut short
    with api_url("http://127.0.0.1:9/api"):
        assert PREFECT_API_SSL_CERT_FILE.value() == path and certificates(path) == 1
    assert PREFECT_API_SSL_CERT_FILE.value() == before
    assert os.environ.get("PREFECT_API_SSL_CERT_FILE") == environment
    with api_url("https://prefect.example.com/api"):
        assert PREFECT_API_SSL_CERT_FILE.value() == before


def test_settings_built_ahead_for_the_recorded_server_are_used_while_prefects_environment_is_unchanged(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warm process builds the settings of a command reporting to the project's server once (`prepare`),
    for every command it forks; a PREFECT_ variable set since, or another URL, gets settings of its own."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    prepare, api_url = (load_entrypoint(f"flows/server.py:{n}") for n in ("prepare", "_api_url"))
    url = "http://127.0.0.1:9/api"
    with temporary_settings(restore_defaults={PREFECT_API_URL}):  # none configured (the suite's server is)
        assert prepare(project) is None  # and no server recorded
        _record(project, url=url)
        ahead = prepare(project)
        assert ahead.api.url == url and ahead.flows.heartbeat_frequency is None
        for _ in range(2):
            with api_url(url):
                assert get_current_settings() is ahead
        monkeypatch.setenv("PREFECT_API_REQUEST_TIMEOUT", "17")
        with api_url(url):
            now = get_current_settings()
            assert now is not ahead and now.api.url == url and now.api.request_timeout == 17
        with api_url("http://127.0.0.1:10/api"):
            assert get_current_settings().api.url == "http://127.0.0.1:10/api"
