"""What a run ran on: Python, packages, code version, hardware and torch's determinism settings.

Captured once per run into its manifest, so a result can be traced to its environment and a failed
`reproduce` can say what differs. The installed distributions and the lock file are also summed up in one
digest (`digest`), which is part of every cached task's key: upgrading torch or polars runs the steps again
instead of reusing what the old versions computed.

Torch's facts (version, thread count, determinism switches) are read by the step that trains, with the
settings it trained under (`torch_facts`), and handed to `capture`: a cached rerun on another machine then
records the thread count the model was made with, not this process's, and need not import torch at all.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
TORCH_FACTS = ("version", "deterministic_algorithms", "threads", "cudnn_deterministic")


def capture(torch: Mapping[str, Any], project_dir: Path | None = None) -> dict[str, Any]:
    """The environment of a run whose model was trained under `torch` (`torch_facts` of the train step)."""
    project = project_dir or Path.cwd()
    packages = installed_packages()
    lock = lock_file(project)
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "user": _user(),
        "code": {"package_sha256": code_version(), **_flows_version(project), **git_state(project)},
        "packages": list(packages),
        "lock": lock,
        "digest": digest(packages, lock),
        "hardware": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "memory_gb": _memory_gb(),
            "gpu": list(torch.get("gpu", [])),
        },
        "torch": {key: torch[key] for key in TORCH_FACTS},
    }


def torch_facts() -> dict[str, Any]:
    """Torch as this process has it set: what decides a model's bytes (float sums are split across threads,
    so another thread count changes the last bits), and the GPUs it sees."""
    import torch

    return {
        "version": torch.__version__,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "threads": torch.get_num_threads(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "gpu": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }


@cache
def installed_packages() -> tuple[str, ...]:
    """Every distribution this process can import, as `name==version` with names normalised (PEP 503),
    sorted; where two folders on sys.path hold one name, the first wins, as it does for imports.

    Read from the `.dist-info` folder names (their version is exact) rather than by parsing each METADATA
    file: about 6 ms instead of a few tenths of a second for 240 distributions, and every process that runs a
    cached task computes it. Cached: a running process keeps the modules it imported whatever is installed
    since; it sees an upgrade when it restarts.
    """
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            folders = sorted(os.listdir(entry or "."))
        except OSError:  # a zip file, a folder that is gone
            continue
        for folder in folders:
            named = _distribution(Path(entry or ".", folder))
            if named is not None:
                found.setdefault(*named)
    return tuple(f"{name}=={version}" for name, version in sorted(found.items()))


def _distribution(path: Path) -> tuple[str, str] | None:
    if path.name.endswith(".dist-info"):
        name, _, version = path.name.removesuffix(".dist-info").partition("-")
    elif path.name.endswith(".egg-info"):  # an old-style install: no version in its name
        dist = metadata.PathDistribution(path)
        name, version = dist.metadata["Name"] or "", dist.version or ""
    else:
        return None
    return (normalised(name), version) if name and version else None


def normalised(name: str) -> str:
    """A distribution name as PEP 503 compares them: `Great_Expectations` -> `great-expectations`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_file(project: Path) -> dict[str, str] | None:
    """The project's lock for this Python (requirements/py3.X.txt) and its sha256; None where it has none."""
    relative = f"requirements/py{sys.version_info.major}.{sys.version_info.minor}.txt"
    path = project / relative
    if not path.is_file():
        return None
    return {"path": relative, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def digest(packages: Iterable[str], lock: Mapping[str, str] | None) -> str:
    """sha256 of the installed distribution set and the lock file's hash: equal digests, equal environments
    as far as any package is concerned."""
    summed = hashlib.sha256()
    for package in packages:
        summed.update(f"{package}\n".encode())
    summed.update(f"lock {lock['sha256'] if lock else None}".encode())
    return summed.hexdigest()


@cache
def current_digest(project: Path) -> str:
    """The digest of this process's environment, for the project at `project` (what cache keys include).

    Cached, as `installed_packages` is; the project's warm process computes it once for the commands it forks,
    and a change to the lock file makes another warm process (`launch.py`).
    """
    return digest(installed_packages(), lock_file(project))


@cache
def code_version(*directories: Path) -> str:
    """sha256 over the Python sources (path and bytes) of the package, or of `directories`: changes whenever
    the code does.

    Cached: a process runs the code it imported, whatever is edited since. A warm process computes it once for
    the commands it forks (`prime`), and stops when a source changes.
    """
    digest = hashlib.sha256()
    for directory in directories or (PACKAGE_DIR,):
        for path in sorted(directory.rglob("*.py")):
            digest.update(f"{directory.name}/{path.relative_to(directory).as_posix()}".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _flows_version(project: Path) -> dict[str, str]:
    flows = project / "flows"
    return {"flows_sha256": code_version(flows)} if flows.is_dir() else {}


def prime(project: Path) -> None:
    """Compute what every run in this process reads, so that processes forked from it do not (about 15 ms
    each): the package's and the flows' code versions and the environment's digest."""
    code_version()
    _flows_version(project)
    current_digest(project)


def git_state(directory: Path) -> dict[str, Any]:
    """Commit and dirty flag of the project's git checkout; nulls when it is not one (or git is absent)."""
    try:
        commit = _git(directory, "rev-parse", "HEAD")
        dirty = bool(_git(directory, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": dirty}


def _git(directory: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=directory, capture_output=True, text=True, timeout=10, check=True
    )
    return result.stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return round(psutil.virtual_memory().total / 2**30, 1)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
