"""No orphans: a command SIGKILLed while its temporary Prefect server (and its Dask workers) run leaves no
process behind. Real processes: what is tested is what the kernel does when the parent dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import psutil
import pytest

PACKAGE = "{{ cookiecutter.package_name }}"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SMALL = [f"--set=data.synthetic.{k}" for k in ("n_users=300", "n_items=200", "n_interactions=5000")]

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="parent-death signals are Linux's (prctl)"
)


def _descendants_once(parent: psutil.Process, ready: str, timeout: float) -> list[psutil.Process]:
    """The parent's descendants, once its temporary server answers and one of them runs `ready`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = parent.children(recursive=True)
        lines = {p: " ".join(p.cmdline()) for p in found if p.is_running()}
        servers = [line for line in lines.values() if "uvicorn" in line and "--port" in line]
        if servers and any(ready in line for line in lines.values()):
            port = servers[0].split("--port ")[1].split()[0]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    return found
            except httpx.HTTPError:
                pass
        time.sleep(0.3)
    raise TimeoutError(f"no answering server and {ready!r} under pid {parent.pid} within {timeout:.0f}s")


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("command", "ready"),
    [
        (["run", "--model", "popularity", *SMALL], "uvicorn"),
        # A sweep: the server and a local Dask cluster (its worker processes are spawned).
        (["sweep", "--workers", "1", *SMALL], "spawn_main"),
    ],
    ids=["run", "sweep"],
)
def test_sigkill_leaves_no_process_behind(command: list[str], ready: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # Prefect's local mode
    process = subprocess.Popen(
        [sys.executable, "-m", PACKAGE, *command, "--set", f"storage.uri={tmp_path / 'artifacts'}"],
        cwd=PROJECT_ROOT,
        env={**env, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        children = _descendants_once(psutil.Process(process.pid), ready, timeout=180)
    finally:
        process.kill()
        process.wait()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [" ".join(p.cmdline())[:120] for p in alive]


def test_a_child_started_to_die_with_its_parent_does(tmp_path: Path) -> None:
    """`dies_with_parent`, as `served` (flows/simulate.py) and the temporary server start their children."""
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
