"""The project's Prefect server over the commands' lifetimes: the first command that needs it starts it, later
ones reuse it, `server stop` leaves nothing behind, concurrent first use ends with one server, a killed
command leaves no process but the recorded server, a stale record is replaced, a server without its record
stops. Real processes, in a copy of the project without PREFECT_API_URL: what is tested is what processes
and the kernel do."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import psutil
import pytest

PACKAGE = "{{ cookiecutter.package_name }}"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SMALL = [f"--set=data.synthetic.{k}" for k in ("n_users=300", "n_items=200", "n_interactions=5000")]

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="process groups and parent-death signals as on Linux"
)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A copy of the project; its server stopped after."""
    yield _copy_of_the_project(tmp_path)
    for server in _servers(tmp_path):  # whatever a failed test left running
        server.kill()


def _copy_of_the_project(into: Path) -> Path:
    """The project's configs and flows in `into` (the package stays where it is)."""
    for part in ("configs", "flows"):
        shutil.copytree(PROJECT_ROOT / part, into / part, ignore=shutil.ignore_patterns("__pycache__"))
    return into


def _environment(project: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # no configured server
    return {**env, "PYTHONPATH": str(PROJECT_ROOT), "COLUMNS": "200", **extra}


def _command(project: Path, *args: str) -> list[str]:
    args = (*args, "--set", f"storage.uri={project / 'artifacts'}") if args[0] in ("run", "sweep") else args
    return [sys.executable, "-m", PACKAGE, *args]


def _cli(project: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        _command(project, *args), cwd=project, env=_environment(project, **extra), capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    return done


def _start(project: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _command(project, *args), cwd=project, env=_environment(project), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _state(project: Path) -> dict[str, object]:
    return json.loads((project / ".prefect" / "server.json").read_text())


def _recorded_pid(project: Path) -> int | None:
    try:
        return _state(project)["pid"]
    except (OSError, ValueError):  # none yet, or being replaced
        return None


def _servers(project: Path) -> list[psutil.Process]:
    """The project's server processes: they run in its .prefect/ (and nothing else does)."""
    home, found = str(project / ".prefect"), []
    for process in psutil.process_iter():
        try:
            if process.cwd() == home and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            pass
    return found


def _group(process: psutil.Process) -> int | None:
    try:
        return None if process.status() == psutil.STATUS_ZOMBIE else os.getpgid(process.pid)
    except (psutil.Error, ProcessLookupError):
        return None


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.e2e
def test_the_first_command_starts_the_server_the_next_reuses_it_and_stop_ends_it(project: Path) -> None:
    started = time.monotonic()
    first = _cli(project, "run", "--model", "popularity", *SMALL)
    first_seconds = time.monotonic() - started
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    state = _state(project)
    server = psutil.Process(state["pid"])
    assert _answers(state["url"]) and state["url"].startswith("http://127.0.0.1:")
    assert [s.pid for s in _servers(project)] == [server.pid]  # it outlived the command
    listening = [c.laddr.ip for c in server.net_connections("inet") if c.status == psutil.CONN_LISTEN]
    assert listening == ["127.0.0.1"]
    assert state["database"] == str(project / ".prefect" / "prefect.db")

    started = time.monotonic()
    second = _cli(project, "run", "--model", "popularity", *SMALL)
    second_seconds = time.monotonic() - started
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert _state(project) == state and [s.pid for s in _servers(project)] == [server.pid]
    assert second_seconds < first_seconds, (first_seconds, second_seconds)  # no server start to pay

    status = _cli(project, "server", "status")
    assert status.returncode == 0 and state["url"] in status.stdout and f"pid {server.pid}" in status.stdout
    assert "answering" in status.stdout and str(project / ".prefect" / "prefect.db") in status.stdout

    stopped = _cli(project, "server", "stop")
    assert stopped.returncode == 0 and f"pid {server.pid}" in stopped.stdout
    assert not _servers(project)  # nor any process in its group (the server's children, if it had any)
    assert not [p for p in psutil.process_iter() if _group(p) == server.pid]
    again = _cli(project, "server", "stop")  # idempotent
    assert again.returncode == 0 and "no server ran" in again.stdout
    assert _cli(project, "server", "status").returncode == 1


@pytest.mark.e2e
def test_a_new_projects_database_is_a_copy_of_the_migrated_one_its_first_server_cached(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cache = {"XDG_CACHE_HOME": str(tmp_path_factory.mktemp("cache"))}
    assert _cli(project, "server", "start", **cache).returncode == 0
    assert _cli(project, "server", "stop").returncode == 0
    (seed,) = Path(cache["XDG_CACHE_HOME"]).glob("*/prefect-*.db")
    with closing(sqlite3.connect(seed)) as db:  # the schema, migrated, and nothing in it
        assert db.execute("SELECT count(*) FROM flow_run").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
        db.execute("CREATE TABLE marked_in_the_seed (x)")

    other = _copy_of_the_project(tmp_path_factory.mktemp("other"))
    try:
        run = _cli(other, "run", "--model", "popularity", *SMALL, **cache)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        with closing(sqlite3.connect(other / ".prefect" / "prefect.db")) as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            assert "marked_in_the_seed" in tables
            assert db.execute("SELECT count(*) FROM flow_run").fetchone()[0] >= 1  # and it serves
    finally:
        _cli(other, "server", "stop")


@pytest.mark.e2e
def test_commands_that_start_it_at_the_same_moment_end_with_one_server_which_stops_without_its_record(
    project: Path,
) -> None:
    starters = [_start(project, "server", "start") for _ in range(3)]
    printed = [starter.communicate(timeout=600)[0] for starter in starters]
    assert all(starter.returncode == 0 for starter in starters), printed
    state = _state(project)
    assert all(f"pid {state['pid']}" in line for line in printed), printed
    assert [s.pid for s in _servers(project)] == [state["pid"]]

    # Its record gone with .prefect/ (`git clean -fdx`, the project deleted): it stops on its own.
    server = psutil.Process(state["pid"])
    shutil.rmtree(project / ".prefect")
    deadline = time.monotonic() + 30
    while _group(server) is not None:
        assert time.monotonic() < deadline, "the server outlived its record"
        time.sleep(0.2)


@pytest.mark.e2e
@pytest.mark.parametrize(
    "command",
    [
        ["run", "--model", "popularity", *SMALL],
        # A sweep: a local Dask cluster too (its worker processes are spawned).
        ["sweep", "--workers", "1", *SMALL],
    ],
    ids=["run", "sweep"],
)
def test_a_killed_command_leaves_no_process_but_the_recorded_server(
    command: list[str], project: Path
) -> None:
    process = _start(project, *command)
    try:
        children = _children_once_working(psutil.Process(process.pid), project, command[0], timeout=300)
    finally:
        process.kill()
        process.wait()
    state = _state(project)
    _, alive = psutil.wait_procs([c for c in children if c.pid != state["pid"]], timeout=10)
    assert not alive, [" ".join(p.cmdline())[:120] for p in alive]
    assert [s.pid for s in _servers(project)] == [state["pid"]] and _answers(state["url"])


def _children_once_working(
    parent: psutil.Process, project: Path, what: str, timeout: float
) -> list[psutil.Process]:
    """The command's descendants once its server answers and its work runs (a run has stored its data; a
    sweep's Dask worker runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = parent.children(recursive=True)
        if what == "run":
            stored = (project / "artifacts" / "objects").rglob("*")
            working = any(p.is_file() and not p.name.startswith(".") for p in stored)
        else:
            working = any("spawn_main" in " ".join(p.cmdline()) for p in found if p.is_running())
        if working and (project / ".prefect" / "server.json").is_file() and _answers(_state(project)["url"]):
            return found
        time.sleep(0.3)
    raise TimeoutError(f"{what} (pid {parent.pid}) did not get to work within {timeout:.0f}s")


@pytest.mark.e2e
def test_a_stale_record_is_replaced_and_a_server_whose_starter_was_killed_is_reused(project: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    home = project / ".prefect"
    home.mkdir()
    stale = {"url": "http://127.0.0.1:9/api", "pid": gone.pid, "created": 0.0, "home": str(home)}
    (home / "server.json").write_text(json.dumps({**stale, "database": ""}))
    assert _cli(project, "server", "status").returncode == 1  # recorded, but not running

    # The starter is SIGKILLed while its server starts: the server runs on, recorded, and is reused.
    starter = _start(project, "server", "start")
    deadline = time.monotonic() + 120
    while _recorded_pid(project) in (gone.pid, None):
        assert time.monotonic() < deadline and starter.poll() is None, "no new server recorded"
        time.sleep(0.05)
    starter.kill()
    starter.wait()
    state = _state(project)
    again = _cli(project, "server", "start")
    assert again.returncode == 0, again.stdout + again.stderr
    assert _state(project) == state and _answers(state["url"])
    assert [s.pid for s in _servers(project)] == [state["pid"]]


@pytest.mark.e2e
def test_a_child_started_to_die_with_its_parent_does(tmp_path: Path) -> None:
    """`dies_with_parent`, as `served` (flows/simulation.py) starts its children."""
    parent_code = textwrap.dedent(
        f"""
        import subprocess, sys, time
        from {PACKAGE}.processes import dies_with_parent
        sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
        child = subprocess.Popen(sleeper, preexec_fn=dies_with_parent())
        print(child.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    child = psutil.Process(int(parent.stdout.readline()))
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    _, alive = psutil.wait_procs([child], timeout=5)
    assert not alive


@pytest.mark.e2e
@pytest.mark.parametrize("entry", [f"{PACKAGE}.cli", "flows"])
def test_a_command_or_flow_run_process_exits_with_its_status_and_skips_the_last_collections(
    entry: str,
) -> None:
    """`quick_exit`, as the command line and the flows' package set it up: the heap is frozen before the
    interpreter's teardown, every exit handler still runs and the exit status is the process's own."""
    code = textwrap.dedent(
        f"""
        import atexit, gc, sys
        atexit.register(lambda: print("frozen:", gc.get_freeze_count() > 0, flush=True))  # runs last
        import {entry}
        print("frozen:", gc.get_freeze_count() > 0, flush=True)
        sys.exit(3)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout.split("\n")[:2] == ["frozen: False", "frozen: True"]
