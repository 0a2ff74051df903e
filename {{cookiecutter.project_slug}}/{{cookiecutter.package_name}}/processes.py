"""Child processes that end with the process that started them, even when it is SIGKILLed; a quick exit;
torch's worker threads sleeping while they wait; this user's directory for runtime files.

A server started for one command (Prefect's temporary API, `serve` in a simulation) must not outlive it.
Exit handlers stop such children on a normal exit, but none runs after SIGKILL, so the kernel is asked to
do it: on Linux, `prctl(PR_SET_PDEATHSIG, SIGTERM)` in the child (between fork and exec) has it sent
SIGTERM when its parent dies. Elsewhere this is a no-op, and a SIGKILLed parent leaves its children running.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_PACKAGE = __name__.split(".")[0]


def dies_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen`: the child is sent SIGTERM when this process dies (Linux).

    The kernel watches the thread that forks, not the process: start such children from a thread that
    lives as long as the process (the main thread), or they are stopped when that thread ends.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before the request took effect: no signal will come
            os._exit(1)

    return preexec


def quick_exit() -> None:
    """Skip the interpreter's last garbage collections when this process exits.

    Tearing down a process that imported Great Expectations, Evidently and torch spends about 2 s of CPU
    collecting their reference cycles (0.8, 1.0 and 0.3 s each), for memory the operating system takes back
    anyway: a command, a flow run under `serve` or a worker, a test process paid it on every exit. Freezing
    the heap at exit leaves those cycles alone; every exit handler still runs, objects outside cycles are
    still released (files closed, buffers flushed), and the exit status is unchanged.
    """
    atexit.register(gc.freeze)


def idle_threads_sleep() -> None:
    """Have torch's OpenMP threads sleep while they wait for work, instead of spinning (unless the
    environment already says otherwise): call before torch is imported, since the library reads it then.

    torch's CPU builds run parallel work on GNU OpenMP, whose idle threads spin for a while before they
    sleep. Alone on a machine that costs little, but a project seldom is: its Prefect server, a worker or
    `serve`, and a second run share the cores, and there the spinning takes the CPU the others need.
    Measured on 2 cores with two busy processes beside it, a test that trains every model used 15.7 s of
    CPU and took 20.0 s spinning, 5.4 s and 10.3 s sleeping; on an idle machine the 1M-event fits take the
    same time either way (benchmarks/models.py). The waiting changes no result: the same work is split
    across the same threads.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def runtime_dir() -> Path:
    """This user's directory for runtime files (warm processes' sockets, records and logs; the CA file of
    plain-HTTP Prefect clients), readable by this user alone."""
    base = os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("TMPDIR") or "/tmp"  # noqa: S108
    root = Path(base) / f"{_PACKAGE}-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    found = root.lstat()
    if found.st_uid != os.getuid() or found.st_mode & 0o077:  # another user's, or open to others: never used
        raise ValueError(f"{root} is not this user's alone")
    return root
