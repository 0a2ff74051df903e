"""What a flow run of the pipeline's shape costs with Prefect alone: the floor under a cached rerun of `run`.

    python benchmarks/prefect_floor.py [--repeats 5]

A cached rerun of `run` still makes a flow run with eight task runs (five of them cached) and seven UI
artifacts, each reported to the project's Prefect server. This times the same shape with nothing else in it:
a flow of eight tasks that add one to a number and seven link artifacts, then an empty flow, run in this
process (already warm, as a forked command is) against the project's server, which is started (or found
running) first. Each run starts once the server is done with the last one's work. For each shape: the median
wall time of a run and the CPU seconds the server spent per run, measured on its process.
`benchmarks/commands.py` prints the same two figures for the cached reruns of `run`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psutil
from prefect import flow, task
from prefect.artifacts import create_link_artifact

PROJECT = Path(__file__).resolve().parents[1]
TASKS, ARTIFACTS = 8, 7  # a cached rerun of `run`: inspect-inputs, five cached steps, record, register
# Seconds each run waits first, for the server to finish what the last one's events queued, as it does
# between the commands a user types (here, a run right after another in one process waited about 2 s for it
# in its first call).
SETTLE = 3.0


@task
def add_one(number: int) -> int:
    return number + 1


@flow
def shaped(tasks: int, artifacts: int) -> None:
    for number in range(tasks):
        add_one(number)
    for number in range(artifacts):
        create_link_artifact(key=f"floor-link-{number}", link="http://127.0.0.1/floor", link_text="floor")


def timed(server: psutil.Process, tasks: int, artifacts: int, repeats: int) -> tuple[float, float]:
    """Median wall seconds of a run, and the server's CPU seconds per run (its work queued by a run's events
    included: it is read a few seconds after the last run, less what it spends idle in that time)."""
    shaped(tasks, artifacts)  # the first run of a flow registers it: not timed
    time.sleep(3)
    idle = _cpu(server)
    time.sleep(3)
    idle = (_cpu(server) - idle) / 3
    before, began, walls = _cpu(server), time.monotonic(), []
    for _ in range(repeats):
        time.sleep(SETTLE)
        started = time.perf_counter()
        shaped(tasks, artifacts)
        walls.append(time.perf_counter() - started)
    time.sleep(SETTLE)
    spent = _cpu(server) - before - idle * (time.monotonic() - began)
    return statistics.median(walls), spent / repeats


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(PROJECT))
    from flows.server import project_server, reporting_to

    state = project_server(PROJECT)
    server = psutil.Process(state.pid)
    load = psutil.getloadavg()[0]
    print(f"Prefect alone, against the project's server; {psutil.cpu_count()} cores, load {load:.1f}")
    with reporting_to(state.url):
        for tasks, artifacts in ((TASKS, ARTIFACTS), (0, 0)):
            wall, cpu = timed(server, tasks, artifacts, args.repeats)
            print(
                f"flow run of {tasks} tasks and {artifacts} link artifacts: {wall:.3f} s a run (median of "
                f"{args.repeats}), server CPU {cpu:.3f} s a run"
            )


if __name__ == "__main__":
    main()
