"""Prefect's temporary local server, started so that it dies with the process that needs it.

In local mode (no PREFECT_API_URL) Prefect starts a temporary server on first use and stops it at exit,
but nothing stops it after a SIGKILL, and such orphans pile up. `temporary_server` starts the same server
(the uvicorn command of Prefect's SubprocessASGIServer) with a parent-death signal
(`processes.dies_with_parent`) and names it in PREFECT_API_URL while it runs, so Prefect starts none: in
the environment (for the processes this one starts) and in Prefect's process-wide settings, which its
background threads read (its event and log workers would otherwise start a server of their own).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import prefect
from prefect.context import refresh_global_settings_context
from prefect.events.worker import EventsWorker
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    get_current_settings,
    temporary_settings,
)

from {{ cookiecutter.package_name }}.processes import dies_with_parent


@contextmanager
def temporary_server() -> Iterator[str]:
    """The Prefect API URL to use inside the block: the configured one, else a temporary server's, which is
    stopped when the block ends and dies with this process if it is killed first.

    Enter it from the main thread (see `dies_with_parent`).
    """
    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    process = subprocess.Popen(
        _uvicorn_command(port), env=_server_environment(), preexec_fn=dies_with_parent()
    )
    try:
        wait_healthy(url, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value(), process)
        with _api_url(url), temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                # Deliver the events emitted while the server runs, and retire the process-wide events
                # worker bound to it: a later one must not send to a server gone.
                EventsWorker.drain_all(timeout=30, at_exit=False)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def _api_url(url: str) -> Iterator[None]:
    """PREFECT_API_URL in the environment and in the settings every thread falls back to."""
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    refresh_global_settings_context()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
        refresh_global_settings_context()


def _uvicorn_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(prefect.__module_path__.parent),
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]


def _server_environment() -> dict[str, str]:
    """What Prefect gives its own temporary server: no UI, marked ephemeral, this process's settings."""
    return {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        **get_current_settings().to_environment_variables(exclude_unset=True),
    }


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until the Prefect server at `url` answers its health check; fails early if its `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the Prefect server for {url} exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the Prefect server at {url} was not healthy within {timeout:.0f}s")
