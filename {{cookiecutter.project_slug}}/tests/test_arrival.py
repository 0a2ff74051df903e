"""Safe arrival with real processes and files: a slow writer, concurrent ingests, a kill mid-ingest, the lock.

Ingests run the core (`ingest_batch`) in `python -c` subprocesses, so locks, pids and SIGKILL are real.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import S3_BUCKET as BUCKET
from conftest import S3_KEY as KEY
from conftest import S3_SECRET as SECRET

from {{ cookiecutter.package_name }}.artifacts import ArtifactRef, LockLost, LockTimeout, open_store
from {{ cookiecutter.package_name }}.artifacts.landing import LandingZone, current_snapshot
from {{ cookiecutter.package_name }}.artifacts.locks import S3Backend
from {{ cookiecutter.package_name }}.data.synthetic import generate
from {{ cookiecutter.package_name }}.ingestion import GONE, STILL_ARRIVING, ingest_batch
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, PACKAGE, Settings, SyntheticConfig, load_settings

pytestmark = pytest.mark.e2e

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT = PROJECT_ROOT / "configs" / "default.yaml"
NOW = 1_800_000_000
EVENTS = generate(SyntheticConfig(n_users=150, n_items=100, n_interactions=1_200), seed=5)
FIRST, SECOND = EVENTS.head(800), EVENTS.slice(800, 200)
BOTH = EVENTS.head(1_000)
EVENT = ["user_id", "item_id", "timestamp"]

# One ingest process: settings from argv, then `ingest_batch` on each file (or on every ready file), one JSON
# outcome per line. HOLD_AT names a step at which it announces "holding" and stops, to be killed there.
INGEST = f"""
import json, os, sys, time
from pathlib import Path
from {PACKAGE} import ingestion
from {PACKAGE}.artifacts import open_store
from {PACKAGE}.artifacts.landing import LandingZone
from {PACKAGE}.settings import load_settings

def hold(*args, **kwargs):
    print("holding", flush=True)
    time.sleep(600)

config = json.loads(sys.argv[1])
settings = load_settings([config["default"]], config["overrides"])
if os.environ.get("HOLD_AT") == "before-pointer":
    ingestion.advance_snapshot = hold
elif os.environ.get("HOLD_AT") == "after-pointer":
    LandingZone.take_in = hold
store = open_store(settings.storage)
import great_expectations  # seconds: paid side by side before the start, not in turn inside the lock
print("ready", flush=True)
while not Path(config["go"]).exists():
    time.sleep(0.01)
files = [Path(f) for f in config["files"]] or LandingZone(settings.ingest).waiting()
for file in files:
    print(json.dumps(ingestion.ingest_batch(file, settings, store, now={NOW}).to_dict()), flush=True)
"""

# One lock holder on the store of argv's settings: takes the lock, says so, and waits to be killed.
HOLD_LOCK = f"""
import json, sys, time
from {PACKAGE}.artifacts import open_store
from {PACKAGE}.settings import load_settings

config = json.loads(sys.argv[1])
with open_store(load_settings([config["default"]], config["overrides"]).storage).lock("ingest", ttl=60):
    print("holding", flush=True)
    time.sleep(600)
"""


def _overrides(tmp_path: Path, store: str, **ingest: float) -> dict[str, Any]:
    return {
        "ingest": {
            "landing": str(tmp_path / "landing"),
            "quarantine": str(tmp_path / "quarantine"),
            **ingest,
        },
        "storage": {"uri": store},
        "validation": {"max_batch_rows": 900},
    }


@pytest.fixture
def overrides(tmp_path: Path) -> dict[str, Any]:
    return _overrides(tmp_path, str(tmp_path / "store"), settle_seconds=1)


@pytest.fixture
def s3_overrides(
    tmp_path: Path, s3_endpoint: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    # Credentials reach the store (here and in the subprocesses) only through the environment.
    monkeypatch.setenv(f"{ENV_PREFIX}STORAGE__ACCESS_KEY_ID", KEY)
    monkeypatch.setenv(f"{ENV_PREFIX}STORAGE__SECRET_ACCESS_KEY", SECRET)
    prefix = f"s3://{BUCKET}/{request.node.name.replace('[', '-').rstrip(']')}"
    return {
        **_overrides(tmp_path, prefix, settle_seconds=1),
        "storage": {"uri": prefix, "endpoint_url": s3_endpoint},
    }


def _settings(overrides: dict[str, Any]) -> Settings:
    return load_settings([DEFAULT], overrides)


def _land(settings: Settings, name: str, frame: pl.DataFrame, age: float = 10.0) -> Path:
    """A batch that landed `age` seconds ago (whole: written under a temporary name, then renamed)."""
    settings.ingest.landing.mkdir(parents=True, exist_ok=True)
    partial = settings.ingest.landing / f".{name}.part"
    partial.write_bytes(frame.write_csv().encode())
    os.utime(partial, (time.time() - age, time.time() - age))
    return partial.replace(settings.ingest.landing / name)


def _seed(settings: Settings) -> dict[str, Any]:
    store = open_store(settings.storage)
    outcome = ingest_batch(_land(settings, "first.csv", FIRST), settings, store, now=NOW)
    assert outcome.accepted, outcome.reasons
    return current_snapshot(store)


class _Process:
    """A `python -c` process on the project whose printed lines are collected by a reader thread."""

    def __init__(self, script: str, overrides: dict[str, Any], tmp_path: Path, files: list[Path], **env: str):
        config = {
            "default": str(DEFAULT),
            "overrides": overrides,
            "go": str(tmp_path / "go"),
            "files": [str(f) for f in files],
        }
        self.popen = subprocess.Popen(
            [sys.executable, "-c", script, json.dumps(config)],
            cwd=PROJECT_ROOT,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **env},
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.outcomes: list[dict[str, Any]] = []

    def said(self, line: str, timeout: float = 0.0) -> bool:
        """Whether the process printed `line` by now (waiting up to `timeout`); outcomes are kept."""
        try:
            while (got := self.lines.get(timeout=timeout)) is not None:
                if got.startswith("{"):
                    self.outcomes.append(json.loads(got))
                elif got == line:
                    return True
        except queue.Empty:
            return False
        raise AssertionError(f"process ended (exit code {self.popen.wait()}) without saying {line!r}")

    def expect(self, line: str, timeout: float = 120) -> None:
        if not self.said(line, timeout):
            self.kill()
            raise AssertionError(f"process did not say {line!r} within {timeout} s")

    def finish(self) -> list[dict[str, Any]]:
        assert self.popen.wait(timeout=120) == 0
        with contextlib.suppress(AssertionError):
            self.said("")  # the remaining lines, up to the end
        return self.outcomes

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)


def _start(tmp_path: Path, *processes: _Process) -> list[_Process]:
    """Release processes waiting for the go file at the same moment, once all of them are ready."""
    for process in processes:
        process.expect("ready")
    (tmp_path / "go").touch()
    return list(processes)


def _first_to_say(processes: list[_Process], line: str, timeout: float = 120) -> _Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.said(line, timeout=0.05):
                return process
    raise AssertionError(f"no process said {line!r} within {timeout} s")


def _snapshot(settings: Settings) -> tuple[dict[str, Any], pl.DataFrame]:
    store = open_store(settings.storage)
    pointer = current_snapshot(store)
    return pointer, store.get_frame(ArtifactRef(**pointer["snapshot"]))


def _same_events(frame: pl.DataFrame, expected: pl.DataFrame) -> bool:
    """Every expected event exactly once, and nothing else."""
    return frame.height == expected.height and frame.select(EVENT).sort(EVENT).equals(
        expected.select(EVENT).sort(EVENT)
    )


# -- a file still being written ----------------------------------------------------------------------------

WRITER = """
import sys, time
rows, target = sys.stdin.read().splitlines(keepends=True), sys.argv[1]
with open(target, "w") as fh:
    for start in range(0, len(rows), 20):
        chunk = "".join(rows[start:start + 20])
        # Half a chunk (ending mid-row), a pause, the rest: a reader at the wrong time sees a broken last row.
        for part in (chunk[: len(chunk) // 2], chunk[len(chunk) // 2 :]):
            fh.write(part)
            fh.flush()
            time.sleep(0.15)
"""


def test_slow_writer_is_taken_in_whole_exactly_once(overrides: dict[str, Any], tmp_path: Path) -> None:
    settings = _settings(overrides)
    _seed(settings)
    slow = settings.ingest.landing / "slow.csv"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(slow)], stdin=subprocess.PIPE, text=True)
    writer.stdin.write(SECOND.write_csv())
    writer.stdin.close()  # about 3 s of writing: 11 chunks of two halves, 0.15 s apart

    zone, store, outcomes = LandingZone(settings.ingest), open_store(settings.storage), []
    deadline = time.monotonic() + 60
    while (writer.poll() is None or zone.look() != ([], [])) and time.monotonic() < deadline:
        # A scheduled ingest takes what is ready; a new-data event names the file, ready or not.
        for file in zone.waiting() + ([slow] if slow.exists() else []):
            if file.exists():
                outcomes.append(ingest_batch(file, settings, store, now=NOW))
        time.sleep(0.1)

    assert writer.wait() == 0
    taken = [o for o in outcomes if o.accepted]
    assert len(taken) == 1 and taken[0].rows == SECOND.height and taken[0].added == SECOND.height
    deferred = [o for o in outcomes if not o.accepted]
    assert deferred and all(o.reasons == [STILL_ARRIVING] and o.left_in_landing for o in deferred)
    assert not any(o.quarantined_to for o in outcomes) and zone.quarantined() == []
    pointer, frame = _snapshot(settings)
    assert _same_events(frame, pl.concat([FIRST, SECOND])) and pointer["batches"][-1]["name"] == "slow.csv"
    assert not slow.exists()


def test_temporary_names_are_never_batches_and_fresh_files_settle(overrides: dict[str, Any]) -> None:
    settings = _settings(overrides)
    zone = LandingZone(settings.ingest)
    for name in (".hidden.csv", "a.csv.part", "b.csv.tmp", "c.csv.partial", "d.csv.crdownload"):
        _land(settings, name, SECOND)
    old = _land(settings, "old.csv", SECOND, age=10)
    fresh = _land(settings, "fresh.csv", SECOND, age=0)
    assert zone.look() == ([old], [fresh])
    time.sleep(1.1)
    assert zone.look() == ([fresh, old], [])
    fresh.write_bytes(fresh.read_bytes() + b"1,2,1700000000,4.0\n")  # it changed: settling again
    os.utime(fresh, (time.time() - 10, time.time() - 10))  # even with an old mtime, as `cp -p` would set
    assert zone.look() == ([old], [fresh])


# -- two ingests at once -------------------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["local", "s3"])
def test_two_concurrent_ingests_both_land(
    store: str, overrides: dict[str, Any], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if store == "s3":
        overrides = request.getfixturevalue("s3_overrides")
    settings = _settings(overrides)
    seed = _seed(settings)
    one, two = _land(settings, "one.csv", SECOND.head(100)), _land(settings, "two.csv", SECOND.tail(100))
    # Locally both list the whole landing zone (two `ingest` runs); on S3 each names its batch (two events).
    files = {"local": [[], []], "s3": [[one], [two]]}[store]
    processes = _start(tmp_path, *(_Process(INGEST, overrides, tmp_path, f) for f in files))
    outcomes = [o for process in processes for o in process.finish()]

    taken = [o for o in outcomes if o["accepted"]]
    assert sorted(Path(o["file"]).name for o in taken) == ["one.csv", "two.csv"], outcomes
    assert all(o["added"] == 100 and not o["reasons"] for o in taken)
    # A file one listed and the other took in meanwhile is reported gone, not refused.
    assert all(o["reasons"] == [GONE] for o in outcomes if not o["accepted"])
    # Serialized: one merged on the seed, the other on top of the first (neither on a stale pointer).
    first, second = sorted(taken, key=lambda o: o["previous"] != seed["snapshot"]["id"])
    assert first["previous"] == seed["snapshot"]["id"] and second["previous"] == first["snapshot"]
    pointer, frame = _snapshot(settings)
    assert pointer["snapshot"]["id"] == second["snapshot"]
    assert sorted(b["name"] for b in pointer["batches"]) == ["first.csv", "one.csv", "two.csv"]
    assert _same_events(frame, BOTH) and LandingZone(settings.ingest).look() == ([], [])


# -- a kill mid-ingest ---------------------------------------------------------------------------------------


def test_ingests_killed_mid_way_lose_no_batch(overrides: dict[str, Any], tmp_path: Path) -> None:
    settings = _settings(overrides)
    _seed(settings)
    one, two = _land(settings, "one.csv", SECOND.head(100)), _land(settings, "two.csv", SECOND.tail(100))
    # Two ingests killed inside the lock: one with its snapshot stored but the pointer not moved yet, one
    # after the pointer moved but before its file left the landing zone. The second breaks the first's lock.
    victims = _start(
        tmp_path,
        _Process(INGEST, overrides, tmp_path, [one], HOLD_AT="before-pointer"),
        _Process(INGEST, overrides, tmp_path, [two], HOLD_AT="after-pointer"),
    )
    for _ in range(2):
        holder = _first_to_say(victims, "holding")
        holder.kill()
        victims.remove(holder)
    assert (Path(settings.storage.uri) / "locks" / "ingest.lock").is_file()  # the last dead holder's lock
    assert one.exists() and two.exists()  # nothing left the landing zone before it was safe

    started = time.monotonic()
    store = open_store(settings.storage)
    waiting = LandingZone(settings.ingest).waiting()
    outcomes = [ingest_batch(file, settings, store, now=NOW) for file in waiting]
    # A dead holder on this host is replaced at once, not after the lock's 60 s ttl.
    assert time.monotonic() - started < 30
    assert [(o.accepted, o.reasons) for o in outcomes] == [(True, []), (True, ["already ingested"])]
    pointer, frame = _snapshot(settings)
    assert [b["name"] for b in pointer["batches"]] == ["first.csv", "two.csv", "one.csv"]
    assert _same_events(frame, BOTH) and LandingZone(settings.ingest).look() == ([], [])


# -- the lock itself -----------------------------------------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def store_overrides(request: pytest.FixtureRequest, overrides: dict[str, Any]) -> dict[str, Any]:
    return request.getfixturevalue("s3_overrides") if request.param == "s3" else overrides


def test_lock_of_a_killed_holder_is_taken_at_once(store_overrides: dict[str, Any], tmp_path: Path) -> None:
    store = open_store(_settings(store_overrides).storage)
    holder = _Process(HOLD_LOCK, store_overrides, tmp_path, [])
    holder.expect("holding")
    with pytest.raises(LockTimeout, match=f"held by pid {holder.popen.pid}"), store.lock("ingest", wait=0.5):
        pass
    holder.kill()
    started = time.monotonic()
    with store.lock("ingest", wait=5) as lease:
        lease.check()
    assert time.monotonic() - started < 5


def test_lock_of_another_host_waits_for_its_expiry(store_overrides: dict[str, Any]) -> None:
    store = open_store(_settings(store_overrides).storage)
    with store.lock("ingest", ttl=60) as lease:
        backend = lease._backend
        # Long enough that a loaded machine still probes before it expires (1.5 s was not, under `make test`).
        expires = time.time() + 4
        elsewhere = {**lease.record, "host": "another-host", "token": "theirs", "expires": expires}
        backend.take_over(json.dumps(elsewhere).encode(), lease._version)  # as if that host had broken ours
        with pytest.raises(LockLost, match="another-host"):
            lease.check()
    # Alive on its host, as far as we can tell: wait for its expiry.
    with pytest.raises(LockTimeout, match="another-host"), store.lock("ingest", wait=0.5):
        pass
    with store.lock("ingest", wait=30) as lease:  # it stopped refreshing: expired, taken over
        assert time.time() > expires
        lease.check()


def test_lock_holder_keeps_it_past_its_ttl_by_refreshing(store_overrides: dict[str, Any]) -> None:
    store = open_store(_settings(store_overrides).storage)
    with store.lock("ingest", ttl=0.6) as lease:
        time.sleep(1.5)  # two and a half ttls: refreshed every 0.2 s
        lease.check()
        with pytest.raises(LockTimeout), store.lock("ingest", ttl=0.6, wait=0.3):
            pass
    with store.lock("ingest", wait=0.5):  # released on the way out
        pass


def test_s3_lock_is_one_conditional_object(s3_overrides: dict[str, Any]) -> None:
    store = open_store(_settings(s3_overrides).storage)
    with store.lock("ingest") as lease:
        assert isinstance(lease._backend, S3Backend)
        data, _, _ = lease._backend.read()
        assert json.loads(data)["pid"] == os.getpid()
        assert lease._backend.create(b"{}") is None  # If-None-Match: * refuses a second lock object
    assert lease._backend.read() is None
