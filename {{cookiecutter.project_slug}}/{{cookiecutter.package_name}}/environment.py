"""What a run ran on: Python, packages, code version, hardware and torch's determinism settings.

Captured once per run into its manifest, so a result can be traced to its environment and a failed
`reproduce` can say what differs.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent


def capture(project_dir: Path | None = None) -> dict[str, Any]:
    import torch

    project = project_dir or Path.cwd()
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "user": _user(),
        "code": {"package_sha256": code_version(), **_flows_version(project), **git_state(project)},
        "packages": installed_packages(),
        "hardware": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "memory_gb": _memory_gb(),
            "gpu": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        },
        "torch": {
            "version": torch.__version__,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "threads": torch.get_num_threads(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
        },
    }


def code_version(*directories: Path) -> str:
    """sha256 over the Python sources (path and bytes) of the package, or of `directories`: changes whenever
    the code does."""
    digest = hashlib.sha256()
    for directory in directories or (PACKAGE_DIR,):
        for path in sorted(directory.rglob("*.py")):
            digest.update(f"{directory.name}/{path.relative_to(directory).as_posix()}".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _flows_version(project: Path) -> dict[str, str]:
    flows = project / "flows"
    return {"flows_sha256": code_version(flows)} if flows.is_dir() else {}


def git_state(directory: Path) -> dict[str, Any]:
    """Commit and dirty flag of the project's git checkout; nulls when it is not one (or git is absent)."""
    try:
        commit = _git(directory, "rev-parse", "HEAD")
        dirty = bool(_git(directory, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": dirty}


def installed_packages() -> list[str]:
    names = {f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]}
    return sorted(names, key=str.lower)


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
