"""The project's Prefect server: started in the background on first use, reused by every later command.

Where no PREFECT_API_URL is configured, the commands' flows report to a server that belongs to the project:
`.prefect/` in the project root holds its Prefect home (its SQLite database, its UI files), its log and
`server.json`, which records its URL and pid. The first command that needs it starts it (4-5 s on two
cores: its database is a copy of an empty migrated one, `_database_from_seed`; 10-15 s where none is cached
yet); later ones find it answering and pay nothing. It listens on 127.0.0.1 only, on a free port, and runs
in a session of its own, so it outlives the command that started it, Ctrl-C included, until
`<package> server stop`.

- One server per project: whoever starts it holds `.prefect/server.lock` (a kernel lock, released even
  when its holder is SIGKILLed), and whoever waits for the lock then finds the server recorded.
- A recorded server that is gone, or does not answer, is replaced. The pid is checked together with the
  process's start time, so a pid the system reused for something else is never taken for the server.
- A server whose record no longer names it (`.prefect/` deleted, as by `git clean -fdx`, or the record
  replaced) stops on its own within seconds: nothing is left running that no command can find.
- A configured PREFECT_API_URL wins: that server is used and none is started.

Prefect is imported only to start or use a server, so `server status` and `server stop` stay quick.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

SERVER_DIR = ".prefect"  # in the project root, git- and docker-ignored
STARTUP_TIMEOUT = 90.0  # a first start (database migrated) takes 10-15 s on two cores, 26 s loaded
_RECORD_CHECK_SECONDS = 5.0  # how often the server checks that its record still names it


class ServerError(RuntimeError):
    """The project's server did not start (its log says why)."""


@dataclass(frozen=True)
class ServerState:
    """What `server.json` records about the project's server."""

    url: str
    pid: int
    created: float  # the process's start time (psutil): with the pid, it names one process
    home: str  # its PREFECT_HOME
    database: str  # where its database lives (a URL without its password, or the SQLite file)

    @property
    def log(self) -> Path:
        """The server's output, for the error message when it does not start."""
        return Path(self.home) / "server.log"

    def is_running(self) -> bool:
        """Whether the recorded process still runs (the same one: same pid and start time; not a zombie)."""
        try:
            process = psutil.Process(self.pid)
            return process.create_time() == self.created and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


@contextmanager
def prefect_api(root: Path | None = None) -> Iterator[str]:
    """The Prefect API URL to use inside the block: the configured one, else the project's server (started
    if needed, see `reporting_to`)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        with temporary_settings(updates=_no_heartbeat()):
            yield configured
        return
    with reporting_to(project_server(root or Path.cwd()).url) as url:
        yield url


@contextmanager
def reporting_to(url: str) -> Iterator[str]:
    """Report to the server at `url` inside the block: named in the environment (for the processes this one
    starts) and in Prefect's process-wide settings, which its background threads read (its event and log
    workers would otherwise start a temporary server of their own)."""
    from prefect.events.worker import EventsWorker

    with _api_url(url):
        try:
            yield url
        finally:
            # Deliver the events emitted in the block, and retire the process-wide events worker bound to
            # this URL: a later block in the same process (tests) may name another server.
            EventsWorker.drain_all(timeout=30, at_exit=False)


def _no_heartbeat() -> dict[Any, Any]:
    """No heartbeat thread for flow runs in this process, unless the environment sets a frequency.

    Heartbeats let a server notice that a flow run's process died. A command runs its flows in its own
    process, and its runs' status files already say when that process is gone (`runs` shows `stopped`);
    stopping the heartbeat thread costs up to a second at the end of every flow run. (Runs that `serve` or a
    worker start are processes of their own, with heartbeats.)
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

    heartbeats = PREFECT_FLOWS_HEARTBEAT_FREQUENCY
    return {} if heartbeats.name in os.environ else {heartbeats: None}


def project_server(root: Path, timeout: float = STARTUP_TIMEOUT) -> ServerState:
    """The project's server, answering: the recorded one, else a new one (a dead or silent one replaced)."""
    home = (root / SERVER_DIR).resolve()
    home.mkdir(exist_ok=True)
    with _locked(home):
        state = read_state(home)
        if state is not None:
            if state.is_running() and _answers(state, timeout):
                return state
            _stop(state)
        return _start(home, timeout)


def read_state(home: Path) -> ServerState | None:
    """The server recorded in `home` (running or not); None if none is, or the record is another home's
    (a project copied with its `.prefect/`: that server is the original's)."""
    try:
        state = ServerState(**json.loads((home / "server.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return state if state.home == str(home) else None


def stop_server(root: Path) -> ServerState | None:
    """Stop the project's server and its children; returns what was stopped (None: nothing ran)."""
    home = (root / SERVER_DIR).resolve()
    if not home.is_dir():
        return None
    with _locked(home):
        state = read_state(home)
        if state is None:
            return None
        running = state.is_running()
        _stop(state)
        return state if running else None


def _start(home: Path, timeout: float) -> ServerState:
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    # This file run as a script (`_serve`; -P: flows/ is not put on its import path), in a session of its
    # own: it does not get the terminal's Ctrl-C, nor a parent-death signal.
    command = [sys.executable, "-P", str(Path(__file__).resolve()), str(home), str(port)]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT__SERVER_FINAL="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    with (home / "server.log").open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # Recorded at once: if this command dies while the server starts, the next one finds it.
    created = psutil.Process(process.pid).create_time()
    state = ServerState(url, process.pid, created, str(home), _database(env))
    _write_state(home, state)
    try:
        wait_healthy(url, timeout, process)
    except (RuntimeError, TimeoutError) as exc:
        _stop(state)
        raise ServerError(f"{exc}; its log: {state.log}") from None
    return state


def _database(env: dict[str, str]) -> str:
    configured = env.get("PREFECT_API_DATABASE_CONNECTION_URL")
    if not configured:
        return str(Path(env["PREFECT_HOME"]) / "prefect.db")
    from sqlalchemy.engine import make_url

    return make_url(configured).render_as_string(hide_password=True)


def _answers(state: ServerState, timeout: float) -> bool:
    """Whether the recorded server answers, giving it up to `timeout` (it may still be starting: its
    starter may have been killed before it was healthy)."""
    try:
        wait_healthy(state.url, timeout, psutil.Process(state.pid))
        return True
    except (RuntimeError, TimeoutError, psutil.Error):
        return False


def _stop(state: ServerState) -> None:
    """Terminate the recorded server's process group (it leads one), then forget it."""
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        if not state.is_running():
            break
        try:
            os.killpg(state.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while state.is_running() and time.monotonic() < deadline:
            time.sleep(0.1)
    (Path(state.home) / "server.json").unlink(missing_ok=True)


def _write_state(home: Path, state: ServerState) -> None:
    partial = home / ".server.json.tmp"
    partial.write_text(json.dumps(asdict(state), indent=2))
    partial.replace(home / "server.json")


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Hold `home/server.lock` (waiting for it): one process at a time starts, replaces or stops."""
    with (home / "server.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


@contextmanager
def _api_url(url: str) -> Iterator[None]:
    """PREFECT_API_URL (and for plain HTTP a small CA file, `_plain_http_ca`) in the environment, and in the
    settings of this thread and of every other, which fall back to the process-wide ones; flow runs in this
    process beat no heartbeat (`_no_heartbeat`). One settings object serves both (`_reporting_settings`)."""
    import prefect.context

    named = _named(url)
    values = {setting.name: value for setting, value in named.items()}  # a setting's name is its variable
    before = {name: os.environ.get(name) for name in values}
    process_wide = prefect.context.GLOBAL_SETTINGS_CONTEXT
    current = prefect.context.get_settings_context()
    reporting = prefect.context.SettingsContext(
        profile=current.profile, settings=_reporting_settings(current.settings, named)
    )
    os.environ.update(values)
    prefect.context.GLOBAL_SETTINGS_CONTEXT = reporting
    try:
        with reporting:
            yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        prefect.context.GLOBAL_SETTINGS_CONTEXT = process_wide


# The last settings `_reporting_settings` built: (what from, for which updates and environment, the settings).
_built: list[tuple[Any, Any, Any]] = []


def _reporting_settings(current: Any, named: dict[Any, str]) -> Any:
    """`current` settings with `named` (`_named`) and no heartbeat (`_no_heartbeat`), the last ones reused
    while neither these nor Prefect's environment variables changed: building them reads every setting again
    (26 ms). A warm process builds those of the project's server once, for the commands it forks (`prepare`);
    its key covers Prefect's settings files."""
    updates = {**named, **_no_heartbeat()}
    key = (
        sorted((setting.name, value) for setting, value in updates.items()),
        sorted((name, value) for name, value in os.environ.items() if name.startswith("PREFECT_")),
    )
    if _built and _built[0][0] is current and _built[0][1] == key:
        return _built[0][2]
    _built[:] = [(current, key, current.copy_with_update(updates=updates))]
    return _built[0][2]


def prepare(root: Path) -> Any:
    """Build, ahead, the settings a command reporting to the project's recorded server builds, and return
    them (a warm process does, once for the commands it forks); None where no server is recorded, or one is
    configured."""
    import prefect.context
    from prefect.settings import PREFECT_API_URL

    state = read_state((root / SERVER_DIR).resolve())
    if state is None or PREFECT_API_URL.value():
        return None
    return _reporting_settings(prefect.context.get_settings_context().settings, _named(state.url))


def _named(url: str) -> dict[Any, str]:
    """What reporting to `url` sets: the URL, and over plain HTTP a CA file of one certificate."""
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_URL

    named: dict[Any, str] = {PREFECT_API_URL: url}
    ca_file = _plain_http_ca(url)
    if ca_file is not None:
        named[PREFECT_API_SSL_CERT_FILE] = ca_file
    return named


def _plain_http_ca(url: str) -> str | None:
    """PREFECT_API_SSL_CERT_FILE for a server spoken to over plain HTTP: a file of one certificate.

    Every API client Prefect makes (five or six a command: the engine's, its event and log workers', the
    version check) loads the CA file into a TLS context, whatever the URL's scheme: certifi's bundle of about
    150 certificates takes 17 ms each time, and 0.4 ms as one. Over plain HTTP no certificate is ever checked,
    so which ones the file holds changes nothing. Nothing is set for https (the user's CA file stands), or
    where the file cannot be written.
    """
    if not url.startswith("http://"):
        return None
    import ssl

    import certifi

    from {{ cookiecutter.package_name }}.processes import runtime_dir

    try:
        path = runtime_dir() / "plain-http-ca.pem"
        try:
            ssl.create_default_context(cafile=path)  # written whole before: a truncated one is replaced
        except (OSError, ssl.SSLError):
            bundle, end = Path(certifi.where()).read_text(), "-----END CERTIFICATE-----"
            partial = path.with_name(f".{path.name}.{os.getpid()}")
            partial.write_text(bundle[: bundle.index(end) + len(end)] + "\n")
            partial.replace(path)
    except (OSError, ValueError):  # ValueError: no directory of this user's alone (`runtime_dir`)
        return None
    return str(path)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(
    url: str, timeout: float, process: subprocess.Popen[bytes] | psutil.Process | None = None
) -> None:
    """Until the Prefect server at `url` answers its health check; fails early if its `process` exits."""
    deadline = time.monotonic() + timeout
    # Plain HTTP has no certificate to check, but httpx loads the CA bundle for every request unless told
    # not to (50 ms of each command's start).
    verify = not url.startswith("http://")
    while time.monotonic() < deadline:
        if process is not None and not _alive(process):
            raise RuntimeError(f"the Prefect server for {url} exited")
        try:
            if httpx.get(f"{url}/health", timeout=2, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the Prefect server at {url} was not healthy within {timeout:.0f}s")


def _alive(process: subprocess.Popen[bytes] | psutil.Process) -> bool:
    if isinstance(process, psutil.Process):
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    return process.poll() is None


def _serve(home: Path, port: int) -> None:
    """The server process: what `prefect server start` runs (API, UI, services), until it is stopped or its
    record no longer names it."""
    import threading

    import uvicorn

    _database_from_seed(home)
    config = uvicorn.Config(
        "prefect.server.api.server:create_app", factory=True, host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)

    def watch_record() -> None:
        while not server.should_exit:
            time.sleep(_RECORD_CHECK_SECONDS)
            state = read_state(home)
            if state is None or state.pid != os.getpid():
                print(f"{home / 'server.json'} no longer names this server (pid {os.getpid()}): stopping")
                server.should_exit = True

    threading.Thread(target=watch_record, daemon=True).start()
    server.run()


def _database_from_seed(home: Path) -> None:
    """A new project's SQLite database, as a copy of an empty one already migrated to this Prefect's schema.

    Migrating a new database (some 200 Alembic revisions) is 5-6 s of CPU in every new project's first
    start; a copy takes milliseconds. The first server of each Prefect version on a machine migrates its own
    database before it serves, and leaves a copy in the user's cache for the next (replaced atomically, so
    two first servers at once each leave a whole one). A database configured elsewhere (PostgreSQL), or one
    that exists, is left alone; the server still checks the schema at start, as always. Without a usable
    cache (no home, read-only), the database is migrated in place, as it was before.
    """
    import asyncio
    import sqlite3

    import prefect
    from prefect.server.database import provide_database_interface
    from prefect.settings import get_current_settings

    database = home / "prefect.db"
    configured = get_current_settings().server.database.connection_url
    default = configured is not None and configured.get_secret_value() == f"sqlite+aiosqlite:///{database}"
    if database.exists() or not default:
        return
    try:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        seed = cache / "repro-recsys" / f"prefect-{prefect.__version__}.db"
        if seed.is_file():
            _copy_database(seed, database)
            return
    except (OSError, RuntimeError, sqlite3.Error) as exc:  # RuntimeError: no home directory to be found
        print(f"no cached Prefect database ({exc}): migrating a new one", flush=True)
        return
    asyncio.run(provide_database_interface().create_db())
    try:
        seed.parent.mkdir(parents=True, exist_ok=True)
        _copy_database(database, seed)
    except (OSError, sqlite3.Error) as exc:
        print(f"could not cache the migrated Prefect database in {seed}: {exc}", flush=True)


def _copy_database(source: Path, target: Path) -> None:
    """A whole copy of an SQLite database (with what its write-ahead log still holds: SQLite's backup),
    put in place at once."""
    import sqlite3

    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    with closing(sqlite3.connect(source)) as reading, closing(sqlite3.connect(partial)) as writing:
        reading.backup(writing)
    partial.replace(target)


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), int(sys.argv[2]))
