"""How a command starts: in a warm process of the project's when one is ready, else in this one.

A command's own work is often short (a cached rerun of `run` under a second, `recommend --user` less), but a
new interpreter first imports Prefect, the CLI and the project's flows: about 1.5 s on two cores, every time.
So the first command in a project also starts, in the background, a *warm process* that imports them once
and waits; later commands with the same interpreter, environment and code are forked from it
(`cli/daemon.py`). The command still runs in a process of its own, with this process's arguments, working
directory, environment, umask and standard streams (the file descriptors themselves are handed over);
signals sent to this process are passed on, and its exit status is the command's. If this process dies
(SIGKILL included), the command is killed too.

Nothing depends on it: whenever no warm process answers, the command runs here, as it always did. A warm
process serves one project directory with one environment and one version of the code (a changed file, an
installed package or another interpreter each make a new key); it stops after `{PACKAGE}_WARM_IDLE` seconds
without a command (600 by default), with `server stop`, or once its project directory or code changes.
`{PACKAGE}_WARM=0` turns it off. Linux only: elsewhere (macOS) forking a process that imported these
libraries is not safe, and commands run on their own. Long-running commands (`serve`, `watch`, `simulate`,
`serve-files`) and `server` always run on their own: a second saved is nothing to them.

Only the standard library is imported here (processes.py imports no more): this module's cost is paid by
every command.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .processes import idle_threads_sleep, runtime_dir

PACKAGE = __name__.split(".")[0]
SWITCH = f"{PACKAGE.upper()}_WARM"
IDLE = f"{PACKAGE.upper()}_WARM_IDLE"
DEFAULT_IDLE_SECONDS = 600.0
# Set only in the environment a warm process is started with: what it is to serve.
SPEC = f"_{PACKAGE.upper()}_WARM_SPEC"
COLD_COMMANDS = frozenset({"serve", "watch", "simulate", "serve-files", "server"})
# Variables a shell or a test runner changes between two commands that mean the same thing; a command
# forked from a warm process still gets them (it gets this process's whole environment), they only do not
# decide which warm process serves it. Nothing imported up front reads them (consoles are made per command).
VOLATILE = frozenset({"_", "PWD", "OLDPWD", "SHLVL", "COLUMNS", "LINES", "PYTEST_CURRENT_TEST", SPEC})
# Messages on the connection, one per line: the warm process says a command started (R) and how it ended
# (E<exit code> or K<signal>); this process passes signals on (S<signal>).
STARTED, EXITED, KILLED, SIGNAL = b"R", b"E", b"K", b"S"
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_MAX_SOCKET_PATH = 100  # sun_path holds 104 (macOS) to 108 (Linux) bytes


def main() -> None:
    """The command line's entry point (`python -m <package>` and the installed script)."""
    idle_threads_sleep()  # first: a command forked from the warm process gets this process's environment
    code = run_warm(sys.argv[1:])
    if code is not None:
        raise SystemExit(code)
    from .cli import app  # the cold path: the whole CLI, here

    app(prog_name=PACKAGE)


def run_warm(args: list[str]) -> int | None:
    """Run the command in the project's warm process; its exit status, or None to run it here.

    None when warm processes are off or not for this command, or when none answered (then one is started
    for the next command).
    """
    if os.environ.get(SWITCH, "1") == "0" or not sys.platform.startswith("linux") or not _eligible(args):
        return None
    if sys._xoptions or sys.flags.optimize:  # `python -X importtime ...`: measured here, as asked
        return None
    try:
        for fd in (0, 1, 2):  # handed over as they are: each must be open
            os.fstat(fd)
        place = Place.here()
    except (OSError, ValueError):
        return None
    try:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(str(place.socket))
    except OSError:
        connection.close()
        start_warm_process(place)
        return None
    with connection:
        try:
            return _relay(connection, place, args)
        except OSError:  # it went away before taking the command: nothing ran
            return None


def _eligible(args: list[str]) -> bool:
    command = next((a for a in args if not a.startswith("-")), None)  # global options come first
    return command is not None and command not in COLD_COMMANDS and "--help" not in args


class Place:
    """Where the warm process for this command lives: a key over everything imports could depend on."""

    def __init__(self, key: str, root: Path, cwd: str, path: list[str]) -> None:
        self.key, self.root, self.cwd, self.path = key, root, cwd, path
        self.socket = root / f"{key}.sock"
        self.lock = root / f"{key}.lock"
        self.record = root / f"{key}.json"
        self.log = root / f"{key}.log"

    @classmethod
    def here(cls, environment: dict[str, str] | None = None, path: list[str] | None = None) -> Place:
        """This process's place (a warm process passes the environment and import path it started with)."""
        cwd, path = os.getcwd(), list(sys.path if path is None else path)
        key = hashlib.sha256(
            json.dumps(
                [
                    sys.executable,
                    sys.version,
                    repr(sys.flags),
                    sorted(sys._xoptions.items()),
                    cwd,
                    path,
                    sorted((k, v) for k, v in (environment or os.environ).items() if k not in VOLATILE),
                    _code_state(cwd, path),
                ],
                default=str,
            ).encode()
        ).hexdigest()[:32]
        place = cls(key, runtime_dir(), cwd, path)
        if len(os.fsencode(place.socket)) > _MAX_SOCKET_PATH:
            raise ValueError(f"{place.socket}: too long for a socket's path")
        return place


def _code_state(cwd: str, path: list[str]) -> list[tuple[str, int, int]]:
    """What the imported code is, and what it read as it was imported: every file of the package and of the
    project's flows/, the change time of the directories packages are installed in (installing or removing
    one changes it), the project's lock files (the environment's digest holds them: `environment.prime`), and
    the files Prefect reads its settings from when it is imported."""
    package = Path(__file__).resolve().parent
    files = [p for p in package.rglob("*") if "__pycache__" not in p.parts]
    files += Path(cwd, "flows").rglob("*.py")
    files += [Path(p) for p in path if Path(p).name in ("site-packages", "dist-packages")]
    files += Path(cwd, "requirements").glob("py*.txt")
    prefect_home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    profiles = os.environ.get("PREFECT_PROFILES_PATH", prefect_home / "profiles.toml")
    files += [Path(cwd, ".env"), Path(cwd, "prefect.toml"), Path(cwd, "pyproject.toml"), Path(profiles)]
    state = []
    for file in files:
        try:
            found = file.stat()
        except OSError:
            continue
        state.append((str(file), found.st_mtime_ns, found.st_size))
    return sorted(state)


def _relay(connection: socket.socket, place: Place, args: list[str]) -> int | None:
    """Hand the command over, pass signals on, and return its exit status (None: it never started)."""
    mask = os.umask(0)
    os.umask(mask)
    request = json.dumps(
        {"key": place.key, "argv": args, "cwd": place.cwd, "env": dict(os.environ), "umask": mask}
    ).encode()
    socket.send_fds(connection, [struct.pack("!I", len(request)) + request], [0, 1, 2])

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(OSError):  # it ended meanwhile: its status is on the way
            connection.sendall(SIGNAL + b"%d\n" % signum)

    before = {signum: signal.signal(signum, forward) for signum in FORWARDED}
    try:
        started, code = _wait(connection)
    finally:  # a command that never started runs here next, with its signals its own again
        for signum, handler in before.items():
            signal.signal(signum, handler)
    if code is not None or not started:
        return code
    sys.stderr.write(f"error: the project's warm process ended before the command did (log: {place.log})\n")
    return 1


def _wait(connection: socket.socket) -> tuple[bool, int | None]:
    """Whether the command started, and its exit status (None: none came)."""
    started = False
    for line in messages(connection):
        if line == STARTED:
            started = True
        elif line.startswith(EXITED):
            return started, int(line[1:])
        elif line.startswith(KILLED):
            _die_of(int(line[1:]))
    return started, None


def messages(connection: socket.socket) -> Iterator[bytes]:
    """The lines the other end sends, until it closes (or the connection fails)."""
    buffer = b""
    while True:
        try:
            chunk = connection.recv(4096)
        except OSError:
            return
        if not chunk:
            return
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        yield from lines


def _die_of(signum: int) -> None:
    """End as the command did, by the same signal (a shell then reports it the same way)."""
    sys.stdout.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    raise SystemExit(128 + signum)  # a signal whose default is not to end the process


def start_warm_process(place: Place) -> None:
    """Start the warm process for `place` in the background, unless one is starting (it holds the lock)."""
    import fcntl
    import subprocess

    try:
        with place.lock.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # one is starting, or cannot start here: this command runs here either way
    import threading

    spec = json.dumps({"key": place.key, "path": place.path})
    with place.log.open("ab") as log:
        starter = subprocess.Popen(  # noqa: S603  (this interpreter, this package)
            [sys.executable, "-c", f"from {PACKAGE}.launch import warm_main; warm_main()"],
            cwd=place.cwd,
            env={**os.environ, SPEC: spec},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # not in this terminal's process group: Ctrl-C here does not reach it
        )
    # It forks the warm process off and exits at once: reaped here, it is no zombie child of the command.
    threading.Thread(target=starter.wait, name="warm-starter", daemon=True).start()


def warm_main() -> None:
    """A warm process's start: detach, take the lock (or leave: another one serves), then serve."""
    import fcntl

    spec = json.loads(os.environ.pop(SPEC))
    sys.path[:] = spec["path"]  # import what the command would (`python -c` put '' first)
    if os.fork():  # the command that started it neither waits for it nor counts it among its children
        os._exit(0)
    environment = dict(os.environ)  # before any import: some set variables (polars, its allocator's)
    place = Place.here(environment, spec["path"])
    if place.key != spec["key"]:  # another interpreter option or code changed meanwhile: not this key's
        return
    lock = place.lock.open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return
    from .cli.daemon import serve

    serve(place, environment)


def records(project: Path | None = None) -> list[dict[str, Any]]:
    """The records of the warm processes that serve `project` (all of this user's without one): pid, start
    time, project directory, log."""
    try:
        root = runtime_dir()
    except (OSError, ValueError):
        return []
    found = []
    for record in root.glob("*.json"):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if project is None or data.get("cwd") == str(project):
            found.append(data)
    return found
