"""Shared fixtures. Tests build settings explicitly (never through global state) and write into tmp_path."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import launch  # the standard library only

# Before anything imports Prefect/GX/Evidently: a private Prefect home and no telemetry from a test run.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Commands that tests start run on their own, as a project's first command does (launch.py): most tests run
# one or two commands in a project of their own, and a warm process started for each would cost more (2 s
# of CPU) than it saves. The tests of user journeys turn them on (test_warm, test_cli), as a user has them.
# Those end a minute after their last command, and with the session (`_stop_warm_processes`).
os.environ.setdefault(launch.SWITCH, "0")
os.environ.setdefault(launch.IDLE, "60")

from {{ cookiecutter.package_name }}.processes import idle_threads_sleep, quick_exit  # noqa: E402
from {{ cookiecutter.package_name }}.settings import Settings, load_settings  # noqa: E402

quick_exit()  # a test process (each pytest-xdist worker) ends without collecting its libraries' garbage
idle_threads_sleep()  # as in a command: the tests' processes share the cores with each other and servers

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Flows load from the project root, as on a worker (deployments/prefect.yaml): tests run from there too.
os.chdir(PROJECT_ROOT)


@pytest.fixture(scope="session", autouse=True)
def _stop_warm_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """At the end of the session, the warm processes serving this session's projects: its temporary
    directories and the project root (each pytest-xdist worker stops those of its own directories)."""
    yield
    from {{ cookiecutter.package_name }}.cli import daemon

    base = tmp_path_factory.getbasetemp()
    for project in {Path(r["cwd"]) for r in launch.records() if "cwd" in r}:
        if project == PROJECT_ROOT or project.is_relative_to(base):
            daemon.stop(project)


@pytest.fixture(scope="session")
def ml100k() -> Path:
    """MovieLens 100K, from $ML100K_DIR; tests that need it skip where it is absent (it cannot be shipped)."""
    path = Path(os.environ.get("ML100K_DIR", "data/ml-100k"))
    if not (path / "u.data").is_file():
        pytest.skip("MovieLens 100K not available (set ML100K_DIR to a directory holding u.data)")
    return path


@pytest.fixture
def small_settings(tmp_path: Path) -> Settings:
    """Project defaults with a small synthetic dataset and a private artifact store."""
    return load_settings(
        [PROJECT_ROOT / "configs" / "default.yaml"],
        {
            "data": {"synthetic": {"n_users": 300, "n_items": 200, "n_interactions": 6_000}},
            "storage": {"uri": str(tmp_path / "artifacts")},
        },
    )


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server (SQLite) for the session, for tests that run flows; yields its URL.

    It is the server a project starts for itself (flows/server.py), for a directory of the session's: its
    database starts as a copy of the cached migrated one, so each pytest-xdist worker's server is up in about
    4 s of CPU instead of the 9 s of `prefect_test_harness`, which migrates a new database every time.
    A PREFECT_API_URL set where the tests run is ignored: tests never write to a server that is not theirs.
    The URL is also in the environment for the rest of the session, so the commands tests start as
    processes report to this server too, instead of each starting the project's (a test of the path
    without a configured server removes it from its command's environment).
    """
    from {{ cookiecutter.package_name }}.cli import runner

    server = runner.project_server()  # flows/server.py, loaded as the commands load it
    root = tmp_path_factory.mktemp("prefect-server")
    try:
        # As in a command, flow runs in the tests' processes beat no heartbeat.
        with server.reporting_to(server.project_server(root).url) as url:
            yield url
    finally:
        server.stop_server(root)


S3_BUCKET = "recsys-test"
S3_KEY, S3_SECRET = "AKIAEXAMPLEKEYID", "example-secret-value"  # moto accepts any credentials


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible server (moto) on 127.0.0.1 for the session, holding the bucket S3_BUCKET."""
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3fs.S3FileSystem(key=S3_KEY, secret=S3_SECRET, client_kwargs={"endpoint_url": endpoint}).mkdir(S3_BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL server on 127.0.0.1 for the session, started by deployments/postgres-local.sh.

    Yields its base URL, postgresql://user:password@127.0.0.1:port. Where PostgreSQL is not installed and
    cannot be, the tests that need it skip, unless REQUIRE_POSTGRES=1 (CI), where they fail instead.
    """
    script = PROJECT_ROOT / "deployments" / "postgres-local.sh"
    scratch = tempfile.mkdtemp(prefix="postgres-")  # not under tmp_path: the server's user must reach it
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = subprocess.run(
        ["bash", str(script), "start", scratch, str(port)], capture_output=True, text=True, timeout=600
    )
    try:
        if started.returncode == 3 and os.environ.get("REQUIRE_POSTGRES") != "1":
            pytest.skip(f"no PostgreSQL here: {started.stderr.strip()}")
        assert started.returncode == 0, f"PostgreSQL did not start:\n{started.stdout}{started.stderr}"
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(script), "stop", scratch], capture_output=True, timeout=120)
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres: str) -> Callable[[str], str]:
    """Make a new, empty database on the session's server; returns its URL for the given SQLAlchemy driver."""
    import psycopg

    def create(driver: str = "psycopg") -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"{postgres}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"{postgres.replace('postgresql://', f'postgresql+{driver}://', 1)}/{name}"

    return create


# -- Test tiers ---------------------------------------------------------------------------------------------
# Every test is in exactly one tier, the heaviest thing it needs (pyproject.toml lists them; README, "Tests"):
#   unit      in the test's own process, on small data, no server: the pure core and in-process commands
#             that run no flow (`make test-fast`)
#   flow      flows on the session's Prefect server, in process or by a command pointed at it: any test that
#             uses the prefect_server fixture
#   e2e       real processes (commands as subprocesses, processes that race or are killed, servers of their
#             own, `serve`, workers, `simulate`) and whole commands on full-size data: marked e2e
#   postgres  needs PostgreSQL, whatever else it runs: the postgres / postgres_database fixtures, or the mark
#             where a test asks for them only at run time (request.getfixturevalue)
# A module's `pytestmark = pytest.mark.unit` is the default of its tests; a test that uses prefect_server in
# it is still flow. A test that neither uses those fixtures nor has a tier mark fails collection, so a new
# test gets one. Under pytest-xdist (`make test`: `--dist loadgroup`, which hands tests out a few at a time in
# this order) the heaviest tiers go first, so the longest tests do not start last. Each worker that runs a
# PostgreSQL test starts its own server (the session fixture), and each test makes its own databases.
# (pytest-xdist 3.8.0's xdist_group does nothing under pytest 9, which no longer reads Item._nodeid: a group
# of tests that must share a worker would need a newer pytest-xdist.)
TIERS = ("unit", "flow", "e2e", "postgres")  # lightest to heaviest
_TIER_OF_FIXTURE = {"prefect_server": "flow", "postgres": "postgres", "postgres_database": "postgres"}

# pytest-xdist's workers inherit the controller's environment, and so the Prefect home chosen at the top
# (whose prefect.db the commands' temporary servers share): each worker gets its own inside it. And readline
# puts COLUMNS=80 and LINES=24 into a worker's environment as it starts, which would fix the width of the
# command line's consoles (made when cli/common.py is imported) for the worker's life: tests set COLUMNS where
# they need a width. This module is imported before any test module imports Prefect or the command line.
if _WORKER := os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["PREFECT_HOME"] = str(Path(os.environ["PREFECT_HOME"]) / _WORKER)
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    for _name in ("COLUMNS", "LINES"):
        os.environ.pop(_name, None)


def _tier(item: pytest.Item) -> str | None:
    named = {mark.name for mark in item.iter_markers() if mark.name in TIERS}
    fixtures = getattr(item, "fixturenames", ())
    named |= {_TIER_OF_FIXTURE[name] for name in fixtures if name in _TIER_OF_FIXTURE}
    return max(named, key=TIERS.index) if named else None


@pytest.hookimpl(tryfirst=True)  # before `-m` selects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tiers = {item: _tier(item) for item in items}
    for item in [item for item, tier in tiers.items() if tier is None]:  # a collection error each, as a
        # failed import would be (pytest stops before running anything; pytest-xdist reports it from a worker)
        message = f"{item.nodeid} has no tier: mark it unit or e2e (see TIERS in tests/conftest.py)"
        config.hook.pytest_collectreport(report=pytest.CollectReport(item.nodeid, "failed", message, []))
        items.remove(item)
        del tiers[item]
    for item, tier in tiers.items():
        # One tier mark per test, on the test itself, so that `-m unit` selects exactly the unit tier.
        for node in item.listchain():
            node.own_markers[:] = [mark for mark in node.own_markers if mark.name not in TIERS]
        item.add_marker(tier)
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: every worker sorts alike
        items.sort(key=lambda item: -TIERS.index(tiers[item]))
