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

# Before anything imports Prefect/GX/Evidently: a private Prefect home and no telemetry from a test run.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from {{ cookiecutter.package_name }}.settings import Settings, load_settings  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Flows load from the project root, as on a worker (deployments/prefect.yaml): tests run from there too.
os.chdir(PROJECT_ROOT)


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
def prefect_server() -> Iterator[str]:
    """A real, temporary Prefect server (SQLite) for the session, for tests that run flows; yields its URL.

    The URL is also in the environment for the rest of the session, so the commands tests start as
    processes report to this server too, instead of each starting the project's (a test of the path
    without a configured server removes it from its command's environment).
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # The heartbeat thread adds about a second to every flow run; tests do not need it.
    with (
        prefect_test_harness(server_startup_timeout=90),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        pytest.MonkeyPatch.context() as environment,
    ):
        url = str(PREFECT_API_URL.value())
        environment.setenv("PREFECT_API_URL", url)
        yield url


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
