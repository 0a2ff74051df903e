"""A project's warm process (see `launch.py`): it imports the CLI, Prefect and the project's flows once, then
forks one process per command, which runs it as a command started from scratch would.

The loop is single-threaded on purpose: forking a process with other threads can leave their locks held
in the child forever. It watches its socket and a wake-up channel for SIGCHLD; when a command's process
ends it tells the command's caller how (exit status or signal). It stops after the idle time, on SIGTERM
(`server stop`), and once its project directory, socket or code is not what it started with; a command
running then is finished first.

A forked command restores what belongs to a process of its own: default signal handlers, the caller's
standard streams (dup'ed onto 0, 1 and 2, so every handler already bound to them writes to the caller's),
working directory, umask and environment, and consoles that look at the caller's terminal again. A thread
in it reads the connection: a signal passed on is raised in the command, and the caller's end closing
(the caller was killed) kills the command.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import platform
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import psutil
from rich.console import Console

from ..launch import (
    DEFAULT_IDLE_SECONDS,
    EXITED,
    IDLE,
    KILLED,
    PACKAGE,
    SIGNAL,
    STARTED,
    Place,
    messages,
    records,
)

if TYPE_CHECKING:
    from collections.abc import Callable

# Every flows/ file a command loads (`simulate` runs cold), loaded as the command would load it.
PRELOADED_FLOWS = (
    "flows/pipeline.py",
    "flows/ingestion.py",
    "flows/monitoring.py",
    "flows/recommend.py",
    "flows/schedule.py",
    "flows/sweeps.py",
)
# What a command's flow run imports as it runs (Prefect's engine, and FastAPI through it; the registry's
# SQLite dialect; the preflight and the serving table): 0.3 s of a cached rerun when imported there.
LATE_IMPORTS = (
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.engine",
    "fastapi.encoders",
    "anyio._backends._asyncio",
    "anyio._core._sockets",
    "anyio._core._streams",
    "prefect.utilities.visualization",
    "sqlite3",
    "sqlalchemy.dialects.sqlite",
    "fsspec.implementations.chained",
    f"{PACKAGE}.preflight",
    f"{PACKAGE}.serving",
)
_TICK = 2.0  # seconds between checks that the project and its code are still what they were
_MAX_REQUEST = 16 * 1024 * 1024


def serve(place: Place, environment: dict[str, str]) -> None:
    """Preload, then serve commands at `place` (whose key was made of `environment`) until idle, stopped or
    stale."""
    home = os.stat(place.cwd)
    _preload()
    if threading.active_count() > 1:
        print(f"not serving: the preload left threads running {threading.enumerate()}", file=sys.stderr)
        return
    idle_after = float(os.environ.get(IDLE, DEFAULT_IDLE_SECONDS))
    _tidy(place)
    place.socket.unlink(missing_ok=True)  # a dead one's: the lock says none else serves this key
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(place.socket))
    os.chmod(place.socket, 0o600)
    listener.listen(64)
    bound = place.socket.stat().st_ino
    created = psutil.Process().create_time()
    place.record.write_text(
        json.dumps({"pid": os.getpid(), "created": created, "cwd": place.cwd, "log": str(place.log)})
    )
    wake_read, wake_write = socket.socketpair()
    for end in (wake_read, wake_write):
        end.setblocking(False)
    signal.set_wakeup_fd(wake_write.fileno())
    stopping = False

    def stop_serving(*_: object) -> None:  # SIGTERM: no new command; those running end first
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that the wake-up channel hears of it
    signal.signal(signal.SIGTERM, stop_serving)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    daemon, last_used, last_check = os.getpid(), time.monotonic(), time.monotonic()
    print(f"{time.ctime()}: serving {place.cwd} as pid {daemon}", file=sys.stderr, flush=True)

    def close_inherited() -> None:  # in a forked command: the loop's own ends are not its
        selector.close()
        for end in (listener, wake_read, wake_write):
            end.close()

    try:
        while True:
            now = time.monotonic()
            if now - last_check >= _TICK:
                last_check = now
                stopping = stopping or _stale(place, environment, home, bound)
            if stopping or (not children and now - last_used > idle_after):
                if listener.fileno() >= 0:
                    selector.unregister(listener)
                    listener.close()
                    _remove(place, bound)
                if not children:
                    return
            for key, _ in selector.select(timeout=_TICK):
                if key.fileobj is wake_read:
                    while _drain(wake_read):
                        pass
                elif listener.fileno() >= 0:
                    _accept(listener, place, children, close_inherited)
                    last_used = time.monotonic()
            if _reap(children):
                last_used = time.monotonic()
    finally:
        if os.getpid() == daemon:  # a command that failed to start leaves through here: not its to tidy
            signal.set_wakeup_fd(-1)
            if listener.fileno() >= 0:
                listener.close()
                _remove(place, bound)
            place.record.unlink(missing_ok=True)
            print(f"{time.ctime()}: stopped", file=sys.stderr, flush=True)


def running(project: Path | None = None) -> list[psutil.Process]:
    """The warm processes serving `project` (all without one) that still run: the processes their records
    name (pid and start time)."""
    found = []
    for record in records(project):
        try:
            process = psutil.Process(record["pid"])
            if process.create_time() == record["created"] and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.Error, KeyError, TypeError):
            continue
    return found


def stop(project: Path | None = None, timeout: float = 30) -> list[int]:
    """Stop the warm processes serving `project` (all without one); each first finishes the commands it
    runs. Their pids."""
    processes = running(project)
    for process in processes:
        process.terminate()
    psutil.wait_procs(processes, timeout=timeout)
    return [p.pid for p in processes]


def _preload() -> None:
    """What every command would import first, imported once here; then frozen out of the collector's way
    (a forked command's collections would otherwise touch, and so copy, every shared page)."""
    from .. import environment
    from ..artifacts import registry  # noqa: F401  (SQLAlchemy: the registry's commands)
    from . import app  # noqa: F401
    from .common import quiet_defaults
    from .runner import flows_module, project_server

    quiet_defaults()
    server = project_server()
    for path in PRELOADED_FLOWS:
        if Path(path).is_file():
            try:
                flows_module(path)
            except Exception:  # noqa: BLE001  (the command that loads it fails with the error, as it would cold)
                traceback.print_exc()
    for name in LATE_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional part not installed: the command imports what it needs, as cold
            traceback.print_exc()
    _complete_models()
    _command_line()
    platform.platform()  # cached: what every run's manifest records (it runs `uname -p` the first time)
    environment.prime(Path.cwd())  # the code and environment digests (the warm key covers what they read)
    server.prepare(Path.cwd())  # the Prefect settings of a command reporting to the project's server
    gc.freeze()


def _complete_models() -> None:
    """Build every validator pydantic left for first use: Prefect defers those of its models (its import is
    quicker), and each forked command would build the ones it uses again (20 ms of a cached rerun)."""
    from pydantic import BaseModel

    models: set[type[BaseModel]] = set()
    pending = [BaseModel]
    while pending:
        for model in pending.pop().__subclasses__():
            if model not in models:
                models.add(model)
                pending.append(model)
    for model in models:
        if not model.__pydantic_complete__:
            # One that cannot be built yet is built on first use, as it would be without this.
            with contextlib.suppress(Exception):
                model.model_rebuild(raise_errors=False)


def _tidy(place: Place) -> None:
    """Remove the logs and locks of keys unused for a week (each change of code or environment makes one)."""
    week_ago = time.time() - 7 * 24 * 3600
    for path in place.root.glob("*"):
        if path.suffix in (".log", ".lock") and path.stem != place.key:
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < week_ago and not path.with_suffix(".json").exists():
                    path.unlink()


def _stale(place: Place, environment: dict[str, str], home: os.stat_result, bound: int) -> bool:
    """Whether this process no longer serves what it started for: the project directory gone or replaced,
    its socket removed, or the code changed (a new warm process serves the new key)."""
    try:
        now = os.stat(place.cwd)
        if (now.st_dev, now.st_ino) != (home.st_dev, home.st_ino) or place.socket.stat().st_ino != bound:
            return True
    except OSError:
        return True
    return Place.here(environment, place.path).key != place.key


def _remove(place: Place, bound: int) -> None:
    try:
        if place.socket.stat().st_ino == bound:  # not a newer process's socket at the same path
            place.socket.unlink()
    except OSError:
        pass


def _drain(wake: socket.socket) -> bool:
    try:
        return bool(wake.recv(4096))
    except BlockingIOError:
        return False


def _accept(
    listener: socket.socket,
    place: Place,
    children: dict[int, socket.socket],
    close_inherited: Callable[[], None],
) -> None:
    """Take one command: read it, check it is this user's and this key's, fork it off."""
    try:
        connection, _ = listener.accept()
    except OSError:
        return
    fds: list[int] = []
    try:
        connection.settimeout(10)
        if hasattr(socket, "SO_PEERCRED"):
            _, uid, _ = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            if uid != os.getuid():
                raise PermissionError(f"a connection from uid {uid}")
        data, fds, _, _ = socket.recv_fds(connection, 65536, 3)
        if len(data) < 4:
            raise ValueError("no request")
        (size,) = struct.unpack("!I", data[:4])
        if size > _MAX_REQUEST:
            raise ValueError(f"a request of {size} bytes")
        body = data[4:]
        while len(body) < size:
            chunk = connection.recv(size - len(body))
            if not chunk:
                raise ValueError("the request ended early")
            body += chunk
        request = json.loads(body)
        if request["key"] != place.key or len(fds) != 3:
            raise ValueError("a request for another key")
    except (OSError, ValueError, KeyError) as exc:
        print(f"{time.ctime()}: refused a command: {exc}", file=sys.stderr, flush=True)
        for fd in fds:
            os.close(fd)
        connection.close()  # the caller sees the end before any start, and runs the command itself
        return
    pid = os.fork()
    if pid == 0:
        close_inherited()
        _command(connection, fds, request)
    for fd in fds:
        os.close(fd)
    children[pid] = connection
    # The command's name only: its options may hold a secret (--set storage.password=...).
    command = next((a for a in request["argv"] if not a.startswith("-")), "")
    print(f"{time.ctime()}: pid {pid} runs {command}", file=sys.stderr, flush=True)


def _reap(children: dict[int, socket.socket]) -> bool:
    """Tell the callers of commands that ended how they ended; whether any did."""
    ended = False
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        connection = children.pop(pid, None)
        if connection is None:
            continue
        ended = True
        code = os.waitstatus_to_exitcode(status)
        print(f"{time.ctime()}: pid {pid} ended: {code}", file=sys.stderr, flush=True)
        message = KILLED + b"%d\n" % -code if code < 0 else EXITED + b"%d\n" % code
        with contextlib.suppress(OSError):  # the caller is gone
            connection.sendall(message)
        connection.close()
    return ended


def _command(connection: socket.socket, fds: list[int], request: dict[str, Any]) -> None:
    """In the forked process: become the caller's command, run it, and exit with its status."""
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    from . import common

    # What a command run on its own sets as it loads the flows (telemetry off, GX's included), which a forked
    # one finds loaded already.
    common.quiet_defaults()
    sys.argv = [PACKAGE, *request["argv"]]
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=stream.isatty())

    Console.__init__(common.console)  # the caller's terminal: its size, colours and whether it is one
    Console.__init__(common.err, stderr=True)
    connection.settimeout(None)
    connection.sendall(STARTED + b"\n")
    threading.Thread(target=_watch, args=(connection,), name="caller", daemon=True).start()
    _exit(_run())


def _run() -> int:
    try:
        _command_line()(prog_name=PACKAGE)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001  (as an uncaught exception ends a process: its traceback, status 1)
        traceback.print_exc()
        return 1
    return 0


def _exit(code: int) -> NoReturn:
    """End the command as an interpreter ends, without taking its heap apart: the threads' exit hooks
    (Prefect's log and event workers deliver what they hold there) and the wait for its non-daemon threads,
    the exit handlers, the streams flushed; then `os._exit`.

    Taking apart the modules a warm process imported (Prefect, GX, torch) took 65 ms of every command, for
    memory the operating system takes back whole; objects still alive at exit are not promised their
    `__del__` anyway. multiprocessing ends its forked processes the same way (`threading._shutdown`, its
    private step of an interpreter's exit, is what it calls too).
    """
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a caller that closed its end reads nothing more anyway
            stream.flush()
    os._exit(code)


@cache
def _command_line() -> Callable[..., Any]:
    """The click command typer makes of the app, which `app()` makes again at every call (25 ms): made once,
    by the warm process, for every command it forks. (`app()` adds only its own traceback style, and a
    forked command prints an uncaught error's traceback itself.)"""
    from typer.main import get_command

    from . import app

    return get_command(app)


def _watch(connection: socket.socket) -> None:
    """Raise in this process the signals its caller passes on; end it when the caller is gone."""
    for line in messages(connection):
        if line.startswith(SIGNAL):
            os.kill(os.getpid(), int(line[1:]))
    os.kill(os.getpid(), signal.SIGKILL)  # nothing runs on for a caller that was killed
