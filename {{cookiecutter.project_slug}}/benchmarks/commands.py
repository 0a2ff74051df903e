"""How long the everyday commands take as a user runs them: `run` first and cached, `recommend`, `simulate`.

    python benchmarks/commands.py [--data DIR] [--repeats 3] [--simulate] [--cold]

Each command is this project's command line in a process of its own (`python -m` the package), from the
project root, against the project's Prefect server, which is started (or found running) before anything is
timed. As a user has them, commands after the first are forked from the project's warm process (started by
the first; `launch.py`); `--cold` turns it off, so that every command starts a new interpreter, as the first
command in a project does. Data: MovieLens 100K from `--data` or $ML100K_DIR (the synthetic data when
neither is given).

Per repeat, in a fresh temporary store: the first `run`, then two cached reruns (each must report its five
steps cached), each rerun's seconds as a fraction of the first's, and the CPU seconds the Prefect server spent
per rerun (its idle ticks taken out; `benchmarks/prefect_floor.py` gives a bare flow of the same shape's);
then `recommend --user` from that run's
model as champion (made so by `models promote`, untimed, when the judge kept it out), answered from the
refit's stored top table. `--simulate` adds one `simulate` (synthetic data, its own temporary store and
landing zone) and how long `serve` took to start each of its runs (created to Running, read from the API);
`--repeats 0 --simulate` times that alone. The 1-minute load average is printed beside each figure: on a
shared machine it says how much the figure was disturbed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from {{ cookiecutter.package_name }}.launch import SWITCH

PROJECT = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, "-m", "{{ cookiecutter.package_name }}"]


def timed(*args: str) -> tuple[float, str]:
    """Seconds one command took, and its output; a failing command stops the benchmark."""
    started = time.perf_counter()
    done = subprocess.run([*COMMAND, *args], cwd=PROJECT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return seconds, done.stdout


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def server_cpu() -> float:
    """CPU seconds the project's Prefect server has spent so far."""
    import psutil

    times = psutil.Process(json.loads(timed("server", "status", "--json")[1])["pid"]).cpu_times()
    return times.user + times.system


def server_idle() -> tuple[float, float, float]:
    """The server's CPU seconds per second while no command runs (its services' ticks), measured over 3 s once
    the work queued by the last run's events is done; and its CPU seconds and the monotonic time then."""
    time.sleep(3)
    first, started = server_cpu(), time.monotonic()
    time.sleep(3)
    now, at = server_cpu(), time.monotonic()
    return (now - first) / (at - started), now, at


def runs(data: list[str], repeats: int) -> None:
    ratios: list[float] = []
    for repeat in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            # A dataset name of its own: the version `models promote` makes champion is of that dataset.
            store = ["--set", f"storage.uri={tmp}/store", "--set", "data.name=benchmark"]
            first, made = timed("run", *data, *store)
            print(f"run {repeat + 1}: first {first:.2f} s ({load()})")
            idle, before, since = server_idle()
            for _ in range(2):
                again, out = timed("run", *data, *store)
                if "1 ran, 5 cached" not in out:
                    sys.exit(f"the rerun was not cached:\n{out}")
                ratios.append(again / first)
                print(f"    cached {again:.2f} s, {again / first:.2f} of the first ({load()})")
            time.sleep(3)  # the server's work queued by the reruns' events, in their figure
            spent = server_cpu() - before - idle * (time.monotonic() - since)
            print(f"    the Prefect server's CPU per cached rerun: {spent / 2:.2f} s")
            if "not promoted" in made:
                timed("models", "promote", "1", "--reason", "benchmark", *store)
            for _ in range(2):
                seconds, _ = timed("recommend", "--user", "42", "-k", "10", *data, *store)
                print(f"    recommend --user 42 -k 10: {seconds:.2f} s ({load()})")
    low, high = min(ratios), max(ratios)
    print(f"cached / first: median {statistics.median(ratios):.2f}, from {low:.2f} to {high:.2f}")


def simulate() -> None:
    began = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        places = [f"storage.uri={tmp}/store", f"ingest.landing={tmp}/landing", f"ingest.quarantine={tmp}/q"]
        seconds, out = timed("simulate", *(a for place in places for a in ("--set", place)))
    print(f"simulate (synthetic data): {seconds:.1f} s ({load()})")
    print(out[out.rfind("timeline") :].rstrip())
    waits = start_waits(json.loads(timed("server", "status", "--json")[1])["url"], began)
    print(
        f"serve: {len(waits)} deployment runs from created to Running: median"
        f" {statistics.median(waits):.2f} s, from {min(waits):.2f} to {max(waits):.2f} s"
    )


def start_waits(url: str, since: datetime) -> list[float]:
    """Seconds from created to Running of the deployments' runs created after `since` (subflows excluded)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas import filters
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=filters.FlowRunFilter(
                start_time=filters.FlowRunFilterStartTime(after_=since),
                deployment_id=filters.FlowRunFilterDeploymentId(is_null_=False),
            )
        )
    return sorted((r.start_time - r.created).total_seconds() for r in runs if r.start_time and r.created)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("ML100K_DIR"), help="a folder holding u.data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--simulate", action="store_true", help="also time one `simulate`")
    parser.add_argument("--cold", action="store_true", help="no warm process: each command starts cold")
    args = parser.parse_args()
    if args.cold:
        os.environ[SWITCH] = "0"
    data = ["--source", "movielens", "--path", args.data] if args.data else ["--source", "synthetic"]
    starts = "each a new interpreter" if args.cold else "forked from the warm process after the first"
    dataset = "MovieLens 100K" if args.data else "synthetic"
    print(f"data: {dataset}; {os.cpu_count()} cores; commands {starts}")
    timed("server", "start")  # a cold server start is not a command's cost once the project's server runs
    if args.repeats > 0:
        runs(data, args.repeats)
    if args.simulate:
        simulate()


if __name__ == "__main__":
    main()
