"""How commands reach the project's flows and the Prefect API they report to.

The flows are not an installed package: they are the project's orchestration layer, found beside
`configs/`, so the CLI, `serve`, `prefect deploy` and workers all run the same files, loaded by path from
the project root.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from typing import Any

from ..settings import PACKAGE, Settings
from .common import COMMAND, fail, quiet_defaults


def load_entrypoint(entrypoint: str, local_server: bool = True) -> Any:
    """An object of the project's `flows/` (`flows/<module>.py:<name>`), loaded the way Prefect loads a
    deployment's entrypoint on a worker: by file path, from the project root (the working directory).

    Within a command, `local_server` also provides the Prefect API the flows report to (`prefect_api`).
    """
    path, _, name = entrypoint.partition(":")
    if not (Path.cwd() / path).is_file():
        fail(f"no {path} here: run {PACKAGE} from the project root", code=2)
    module = flows_module(path)
    if local_server:
        prefect_api()
    return getattr(module, name)


def run_pipeline(settings: Settings) -> Any:
    """Run the pipeline flow in this process (Prefect's local mode); its final state."""
    pipeline = load_entrypoint("flows/pipeline.py:pipeline")
    return pipeline(settings.resolved(), return_state=True)


def prefect_api() -> None:
    """Within a command: the Prefect API its flows report to, the configured PREFECT_API_URL or else the
    project's server, started in the background on first use, reused by later commands (flows/server.py)."""
    command = COMMAND.get()
    if command is None:  # a test or a script loading flows: its Prefect set-up is its own
        return
    if "prefect_api" not in command.meta:
        server = project_server()
        try:
            command.meta["prefect_api"] = command.with_resource(server.prefect_api())
        except server.ServerError as exc:
            fail(f"the project's Prefect server did not start: {exc}", code=1)


@cache
def project_server() -> Any:
    """flows/server.py, loaded without Prefect's loader: it imports Prefect only to start or use a server, so
    `server status` and `server stop` answer at once."""
    path = Path("flows/server.py")
    if not path.is_file():
        fail(f"no {path} here: run {PACKAGE} from the project root", code=2)
    quiet_defaults()
    spec = importlib.util.spec_from_file_location("_project_server", path)
    assert spec is not None and spec.loader is not None  # a .py file that exists always has a loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@cache
def flows_module(path: str) -> Any:
    """A file of flows/ (relative to the project root), loaded once per process: Prefect's loader executes
    the file again on every call."""
    quiet_defaults()
    from prefect.utilities.importtools import load_script_as_module  # heavy: import late

    return load_script_as_module(path)
