"""What every command shares: the consoles, the options, loading settings (once, the same way for all), and
the ways a command ends or points at a stored file.

Process-wide defaults for Prefect, GX and Evidently (telemetry off, a patient server start) are set here,
before any command imports them (`quiet_defaults`).
"""

from __future__ import annotations

import json
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import unquote

import typer
from rich.console import Console
from rich.markup import escape

from ..artifacts import ArtifactStore, open_store
from ..settings import DataSource, ModelName, Settings, deep_merge, dotted_overrides, load_settings

DEFAULT_CONFIG = Path("configs/default.yaml")
_QUIET_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # A cold start of Prefect's temporary local server takes 10-15 s on two cores; the default allows 20.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}

console = Console()
err = Console(stderr=True)
# The running command's root context (set by the app's callback): what lives as long as the command does.
COMMAND: ContextVar[typer.Context | None] = ContextVar("COMMAND", default=None)

ConfigOption = Annotated[
    list[Path] | None,
    typer.Option("--config", "-c", help=f"YAML file layered over {DEFAULT_CONFIG}; repeat to stack several."),
]
TagOption = Annotated[
    list[str] | None,
    typer.Option("--tag", help="Label the run (or filter runs) with key=value (repeatable)."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one setting, e.g. --set model.ease.l2=500 (repeatable)."),
]
# The data interface of `run`, `benchmark`, `ingest`, `recommend`, `monitor` and `simulate`: the same options.
SourceOption = Annotated[DataSource | None, typer.Option(help="Data source [data.source].")]
PathOption = Annotated[
    Path | None,
    typer.Option(help="MovieLens directory, or a data file (any name) or directory of them [data.path]."),
]
ModelOption = Annotated[ModelName | None, typer.Option(help="Model to train [model.name].")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table (for scripts).")]


def load(
    config: list[Path] | None,
    set_: list[str] | None,
    *,
    source: str | None = None,
    path: Path | None = None,
    model: str | None = None,
    seed: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Settings:
    """The command's settings: configs/default.yaml, then each --config, then each --set, then the command's
    own options and `extra` (an option of the command is the more specific word)."""
    files = list(config or [])
    if DEFAULT_CONFIG.is_file() and DEFAULT_CONFIG.resolve() not in {f.resolve() for f in files}:
        files.insert(0, DEFAULT_CONFIG)
    elif not files:
        fail(f"no {DEFAULT_CONFIG} here: run from the project root or pass --config FILE", code=2)
    options: dict[str, Any] = {**(extra or {})}
    data = {k: v for k, v in (("source", source), ("path", path and str(path))) if v is not None}
    if data:
        options["data"] = {**options.get("data", {}), **data}
    if model is not None:
        options["model"] = {"name": model}
    if seed is not None:
        options["seed"] = seed
    settings = load_settings(files, deep_merge(dotted_overrides(set_ or []), options))
    # Flows get `resolved()`, which holds no secret, and read secrets from the environment: a password given
    # in a config file or with --set reaches this process's flows (and the processes it starts) that way,
    # never as a flow-run parameter.
    os.environ.update(settings.secret_environment())
    return settings


def store_of(config: list[Path] | None, set_: list[str] | None) -> ArtifactStore:
    """The artifact store the settings name."""
    return open_store(load(config, set_).storage)


def registry_of(settings: Settings) -> Any:
    """The model registry the settings name (SQLAlchemy is imported only by commands that use it)."""
    from ..artifacts.registry import open_registry

    return open_registry(settings.registry, settings.storage)


def checked_data(settings: Settings, split: Any = None) -> Settings:
    """`settings` once its data passed the preflight (before any server or flow starts); else one line per
    problem, naming the setting to change, and exit 2."""
    from .. import preflight

    report_preflight(preflight.check(settings, split))
    return settings


def report_preflight(found: Any) -> None:
    """Print a preflight's warnings and problems; exit 2 on a problem."""
    for warning in found.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True, highlight=False)
    for problem in found.problems[:-1]:
        err.print(f"[red]error:[/] {escape(problem)}", soft_wrap=True, highlight=False)
    if found.problems:
        fail(found.problems[-1], code=2)


def quiet_defaults() -> None:
    """Telemetry off and a patient server start, unless the environment says otherwise."""
    for key, value in _QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)


def tags(pairs: list[str]) -> dict[str, str]:
    """`key=value` pairs as a dict; exit 2 on a pair without `=`."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"tag '{pair}' is not of the form key=value", code=2)
        out[key] = value
    return out


def cell(value: Any) -> str:
    """A table cell: floats to four places, None empty."""
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def print_json(value: Any) -> None:
    """`value` as JSON on stdout, unstyled and unwrapped (for scripts and tests)."""
    typer.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def link(store: ArtifactStore, uri: str) -> str:
    """Where to open a stored file: its http(s) link (`serve-files`, or presigned on S3), else its path."""
    found = store.link(uri)
    return found if found.startswith(("http://", "https://")) else unquote(found.removeprefix("file://"))


def state_message(state: Any) -> str:
    """What a failed flow run's state says, with the flow's own exception where there is one."""
    try:
        state.result()
    except Exception as exc:  # the flow's own exception carries the useful message
        return f"{type(exc).__name__}: {exc}"
    return state.message or "no message"


def fail(message: str, code: int) -> NoReturn:
    """End the command with one `error:` line and exit `code`."""
    # Escaped: a message quoting a value such as `[y` or `[default]` must print as it is, not as markup.
    err.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)
