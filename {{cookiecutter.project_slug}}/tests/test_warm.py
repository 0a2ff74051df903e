"""Commands forked from the project's warm process (launch.py, cli/daemon.py), as a user runs them: the first
command runs on its own and starts the warm process; later ones get their own arguments, environment,
streams, terminal width and exit status from it; a signal reaches the command, and a killed caller takes its
command along; changed code, another environment, idleness and `server stop` each end or replace it; and with
it turned off, no warm process starts. Real processes, in a copy of the project (configs, flows)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from {{ cookiecutter.package_name }}.cli import daemon
from {{ cookiecutter.package_name }}.launch import IDLE, SWITCH, Place, records, run_warm

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="processes read through /proc (psutil)"),
]

PACKAGE = "{{ cookiecutter.package_name }}"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SMALL = [f"--set=data.synthetic.{k}" for k in ("n_users=300", "n_items=200", "n_interactions=5000")]
LONG_TRAINING = ["--model", "bpr", "--set", "model.bpr.epochs=2000", *SMALL]


@pytest.fixture
def project(tmp_path: Path, prefect_server: str) -> Iterator[Path]:
    """A copy of the project (the package stays where it is), reporting to the session's Prefect server."""
    for part in ("configs", "flows"):
        shutil.copytree(PROJECT_ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    yield tmp_path
    daemon.stop(tmp_path)


def _environment(project: Path, **extra: str) -> dict[str, str]:
    """A user's: warm processes on (the default; the suite turns them off elsewhere), the copy's store."""
    store = {f"{PACKAGE.upper()}_STORAGE__URI": str(project / "artifacts")}
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "COLUMNS": "200", SWITCH: "1", **store}
    return {**env, **extra}


def _start(project: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", PACKAGE, *args], cwd=project, env=_environment(project, **extra),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _cli(project: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    process = _start(project, *args, **extra)
    out, err = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _warm(project: Path, timeout: float = 120, besides: tuple[int, ...] = ()) -> psutil.Process:
    """The project's warm process once it serves (its record is written once it listens)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in daemon.running(project) if p.pid not in besides]
        if found:
            (record,) = [r for r in records(project) if r["pid"] == found[0].pid]
            _LOGS[found[0].pid] = Path(record["log"])
            return found[0]
        time.sleep(0.2)
    raise TimeoutError(f"no warm process for {project} within {timeout:.0f} s")


_LOGS: dict[int, Path] = {}  # each warm process's log, noted while it ran (its record goes with it)


def _served(warm: psutil.Process) -> list[str]:
    """The commands a warm process forked, in order, from its part of its key's log."""
    lines = _LOGS[warm.pid].read_text().splitlines()
    start = max(i for i, line in enumerate(lines) if line.endswith(f" as pid {warm.pid}"))
    return [line.rsplit(" runs ", 1)[1] for line in lines[start:] if " runs " in line and ": pid " in line]


def _logs(flow_run_id: str) -> list[str]:
    """A flow run's log messages on the session's server, in order."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
            limit=200,
            offset=0,
            sort=LogSort.TIMESTAMP_ASC,
        )
    return [log.message for log in logs]


def _command_of(warm: psutil.Process, timeout: float = 120) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = warm.children()
        if children:
            return children[0]
        time.sleep(0.1)
    raise TimeoutError(f"warm process {warm.pid} forked no command within {timeout:.0f} s")


def test_later_commands_are_forked_with_their_own_arguments_environment_streams_and_status(
    project: Path,
) -> None:
    assert not daemon.running(project)
    first = _cli(project, "run", "--model", "popularity", *SMALL)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    warm = _warm(project)
    assert warm.cwd() == str(project) and _served(warm) == []  # the first ran on its own

    again = _cli(project, "run", "--model", "popularity", *SMALL)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "1 ran, 5 cached" in again.stdout
    listed = _cli(project, "runs", "--json")
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 2  # stdout holds the JSON alone
    # The forked run's last log line reached the server before its process left (`daemon._exit`).
    assert "Finished in state Completed" in _logs(json.loads(listed.stdout)[0]["run_id"])[-1]
    missing = _cli(project, "models", "show", "99")
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr.strip() == "error: no model version 99"
    narrow = _cli(project, "runs", COLUMNS="60")
    wide = _cli(project, "runs", COLUMNS="200")
    assert max(map(len, narrow.stdout.splitlines())) <= 60 < max(map(len, wide.stdout.splitlines()))
    assert _served(warm) == ["run", "runs", "models", "runs", "runs"]

    # Another environment is another warm process: what was imported may have read it.
    seeded = _cli(project, "config", **{f"{PACKAGE.upper()}_SEED": "123"})
    assert seeded.returncode == 0 and json.loads(seeded.stdout)["settings"]["seed"] == 123, seeded.stdout
    other = _warm(project, besides=(warm.pid,))
    seeded = _cli(project, "config", **{f"{PACKAGE.upper()}_SEED": "123"})
    assert json.loads(seeded.stdout)["settings"]["seed"] == 123
    assert _served(other) == ["config"] and _served(warm) == ["run", "runs", "models", "runs", "runs"]


def test_a_forked_command_leaves_as_an_interpreter_does_less_the_teardown(tmp_path: Path) -> None:
    """`daemon._exit`, which ends every forked command: the threads' exit hooks (where Prefect's log and
    event workers deliver what they hold), the wait for non-daemon threads, the exit handlers and the
    buffered output all happen before it leaves, with the command's status."""
    script = f"""
import atexit, sys, threading, time
from pathlib import Path
from {PACKAGE}.cli.daemon import _exit
out = Path(sys.argv[1])
threading._register_atexit(lambda: (out / "thread-hook").write_text("ran"))
threading.Thread(target=lambda: (time.sleep(0.5), (out / "thread").write_text("done"))).start()
atexit.register(lambda: (out / "atexit").write_text("ran"))
print("buffered", end="")
_exit(3)
"""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stdout) == (3, "buffered"), done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atexit", "thread", "thread-hook"]


def test_a_signal_reaches_the_command_and_a_killed_caller_takes_its_command_along(project: Path) -> None:
    assert _cli(project, "runs").returncode == 0
    warm = _warm(project)

    caller = _start(project, "run", *LONG_TRAINING)
    command = _command_of(warm)
    time.sleep(3)  # under way (its imports done)
    caller.send_signal(signal.SIGINT)
    _, err = caller.communicate(timeout=60)
    assert caller.returncode == 130, err[-3000:]  # as a command of its own ends on Ctrl-C
    assert not command.is_running() or command.status() == psutil.STATUS_ZOMBIE

    caller = _start(project, "run", *LONG_TRAINING)
    command = _command_of(warm)
    time.sleep(3)
    caller.kill()
    caller.wait()
    _, alive = psutil.wait_procs([command], timeout=10)
    assert not alive  # nothing trains on for a caller that is gone
    assert warm.is_running() and _served(warm) == ["run", "run"]


def test_changed_code_gets_a_new_warm_process_and_the_old_one_stops(project: Path) -> None:
    assert _cli(project, "runs").returncode == 0
    old = _warm(project)
    flows = project / "flows" / "pipeline.py"
    flows.write_text(flows.read_text() + "\n# changed\n")

    changed = _cli(project, "runs")
    assert changed.returncode == 0
    assert _served(old) == []  # it ran on its own, with the changed file, and started another
    new = _warm(project, besides=(old.pid,))
    _, alive = psutil.wait_procs([old], timeout=30)
    assert not alive
    assert _cli(project, "runs").returncode == 0 and _served(new) == ["runs"]


def test_a_changed_lock_file_gets_a_new_warm_process_and_runs_the_steps_again(project: Path) -> None:
    """The warm process computes the code's and the environment's digests once, for the commands it forks
    (`environment.prime`). The lock file is part of the environment's: once it changes, no command may be
    forked with the old digest, which would reuse results computed under the old lock."""
    lock = project / "requirements" / f"py{sys.version_info.major}.{sys.version_info.minor}.txt"
    lock.parent.mkdir()
    lock.write_text("polars==1.0.0\n")
    run = ["run", "--model", "popularity", *SMALL]
    assert _cli(project, *run).returncode == 0
    old = _warm(project)
    again = _cli(project, *run)
    assert "1 ran, 5 cached" in again.stdout and _served(old) == ["run"]

    lock.write_text("polars==1.0.1\n")
    changed = _cli(project, *run)
    assert changed.returncode == 0, changed.stdout[-3000:] + changed.stderr[-3000:]
    assert "6 ran, 0 cached" in changed.stdout and _served(old) == ["run"]
    new = _warm(project, besides=(old.pid,))
    forked = _cli(project, *run)
    assert "1 ran, 5 cached" in forked.stdout and _served(new) == ["run"]


def test_two_commands_at_once_then_server_stop_ends_it(project: Path) -> None:
    assert _cli(project, "runs").returncode == 0
    warm = _warm(project)
    callers = [_start(project, "runs", "--json") for _ in range(2)]
    outputs = [c.communicate(timeout=120) for c in callers]
    assert [c.returncode for c in callers] == [0, 0], outputs
    assert all(json.loads(out) == [] for out, _ in outputs)
    assert _served(warm) == ["runs", "runs"]

    status = _cli(project, "server", "status", "--json")
    assert json.loads(status.stdout)["warm_processes"] == [warm.pid]
    stopped = _cli(project, "server", "stop")
    assert stopped.returncode == 0 and f"pids {warm.pid}" in stopped.stdout
    assert not warm.is_running() and not daemon.running(project)
    assert not [r for r in records(project)]  # its record (and socket) went with it


def test_it_ends_when_idle_and_never_starts_when_turned_off(project: Path) -> None:
    assert _cli(project, "runs", **{IDLE: "2"}).returncode == 0
    warm = _warm(project)
    _, alive = psutil.wait_procs([warm], timeout=30)
    assert not alive and not records(project)

    for _ in range(2):
        assert _cli(project, "runs", **{SWITCH: "0"}).returncode == 0
    time.sleep(3)
    assert not daemon.running(project)


@pytest.mark.parametrize(
    ("says", "status"),
    [(b"", None), (b"R\n", 1)],
    ids=["gone-before-starting-it", "gone-while-it-ran"],
)
def test_a_warm_process_that_goes_away_leaves_the_caller_its_own_signals(
    says: bytes,
    status: int | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """One that drops the command before starting it: the caller runs it itself (None), with Ctrl-C its own
    again; one that dies after starting it: exit 1 and where its log is, not a status made up."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(SWITCH, "1")
    place = Place.here()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        place.socket.unlink(missing_ok=True)
        listener.bind(str(place.socket))
        listener.listen(1)

        def answer_and_go() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(1 << 20)  # the request (its file descriptors are dropped with it)
                connection.sendall(says)

        other = threading.Thread(target=answer_and_go)
        other.start()
        handler = signal.getsignal(signal.SIGINT)
        try:
            assert run_warm(["runs"]) == status
        finally:
            other.join(10)
            place.socket.unlink(missing_ok=True)
    assert signal.getsignal(signal.SIGINT) is handler
    stderr = capfd.readouterr().err
    assert (str(place.log) in stderr) == (status == 1)
