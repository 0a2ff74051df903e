"""`server start|status|stop`: the project's Prefect server (.prefect/), which commands start on first use
where no PREFECT_API_URL is configured, and reuse."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import typer

from . import daemon
from .common import JsonOption, console, fail, print_json
from .runner import project_server

app = typer.Typer(
    help="The project's Prefect server (.prefect/), which commands start on first use where no "
    "PREFECT_API_URL is configured, and reuse."
)


@app.command("start")
def start() -> None:
    """Start the project's Prefect server in the background, unless it runs; print its URL."""
    server = project_server()
    try:
        state = server.project_server(Path.cwd())
    except server.ServerError as exc:
        fail(f"the project's Prefect server did not start: {exc}", code=1)
    ui = state.url.removesuffix("/api")
    console.print(f"project Prefect server on {state.url} (UI {ui}), pid {state.pid}", soft_wrap=True)
    _note_configured_api()


@app.command("status")
def status(as_json: JsonOption = False) -> None:
    """The project's Prefect server: URL, pid, uptime, database, log; exit 1 when none runs."""
    import httpx

    server = project_server()
    state = server.read_state(Path.cwd() / server.SERVER_DIR)
    running = state is not None and state.is_running()
    warm = daemon.running(Path.cwd())
    answering = False
    if running:
        try:
            answering = httpx.get(f"{state.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            answering = False
    if as_json:
        fields = ("url", "pid", "database", "log", "created")
        print_json(
            {
                "running": running,
                "answering": answering,
                "warm_processes": [p.pid for p in warm],
                **({f: getattr(state, f) for f in fields} if running else {}),
            }
        )
        if not running:
            raise typer.Exit(1)
        return
    if not running:
        console.print("no project Prefect server runs (the next command that needs one starts it)")
        _note_warm(warm)
        _note_configured_api()
        raise typer.Exit(1)
    console.print(
        f"project Prefect server on {state.url} (UI {state.url.removesuffix('/api')})\n"
        f"  pid {state.pid}, up {_uptime(state.created)}, "
        f"{'answering' if answering else '[red]not answering[/] (the next command replaces it)'}\n"
        f"  database: {state.database}\n  log:      {state.log}",
        soft_wrap=True,
        highlight=False,
    )
    _note_warm(warm)
    _note_configured_api()


@app.command("stop")
def stop() -> None:
    """Stop the project's Prefect server and its processes, and its warm processes (nothing to do if none
    runs)."""
    warm = daemon.stop(Path.cwd())
    stopped = project_server().stop_server(Path.cwd())
    console.print(f"stopped the project Prefect server (pid {stopped.pid})" if stopped else "no server ran")
    if warm:
        console.print(f"stopped the project's warm processes (pids {', '.join(map(str, warm))})")


def _note_warm(warm: list[psutil.Process]) -> None:
    """The warm processes that commands are forked from (launch.py), if any run."""
    for process in warm:
        up = _uptime(process.create_time())
        console.print(f"warm process for commands: pid {process.pid}, up {up}", highlight=False)


def _uptime(started: float) -> str:
    up = int(time.time() - started)
    return f"{up // 3600}h{up // 60 % 60:02d}m{up % 60:02d}s"


def _note_configured_api() -> None:
    if os.environ.get("PREFECT_API_URL"):
        console.print(
            f"note: PREFECT_API_URL is set ({os.environ['PREFECT_API_URL']}): commands use that server",
            soft_wrap=True,
            highlight=False,
        )
