"""The command line: `<package> run` runs the pipeline; `<package> config` shows the resolved settings.

This is the entry point, so it is where settings are loaded (once) and where process-wide defaults for
Prefect, GX and Evidently (telemetry off, a patient local-server start) are set, before they are imported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from .settings import PACKAGE, ConfigFileError, Settings, dotted_overrides, load_settings

DEFAULT_CONFIG = Path("configs/default.yaml")
_QUIET_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # A cold start of Prefect's temporary local server takes 10-15 s on two cores; the default allows 20.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}

app = typer.Typer(help=f"{PACKAGE}: a reproducible recommender pipeline on Prefect.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

ConfigOption = Annotated[
    list[Path] | None,
    typer.Option("--config", "-c", help=f"YAML file layered over {DEFAULT_CONFIG}; repeat to stack several."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one setting, e.g. --set model.ease.l2=500 (repeatable)."),
]


@app.command()
def run(
    config: ConfigOption = None,
    source: Annotated[str | None, typer.Option(help="Data source: synthetic, movielens or file.")] = None,
    path: Annotated[
        Path | None, typer.Option(help="MovieLens directory, or a CSV/Parquet file or directory.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model to train: popularity, ease or bpr.")] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed for data generation, splitting and training.")
    ] = None,
    set_: SetOption = None,
) -> None:
    """Run the whole pipeline (ingest, validate, train, evaluate, report) and print a summary."""
    overrides = _cli_overrides(source=source, path=path, model=model, seed=seed, pairs=set_ or [])
    settings = _load(config, overrides)
    if settings.data.source != "synthetic" and not Path(settings.data.path or "").exists():
        _fail(f"data path does not exist: {settings.data.path}", code=2)

    for key, value in _QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from .flows.pipeline import pipeline  # imports Prefect: only once we know there is work to do

    console.print(
        f"[bold]{PACKAGE}[/] pipeline: source={settings.data.source} model={settings.model.name} "
        f"config={settings.fingerprint()[:12]}"
    )
    state = pipeline(settings.resolved(), return_state=True)
    if not state.is_completed():
        _fail(f"pipeline {state.name}: {_state_message(state)}", code=1)
    _print_summary(state.result())


@app.command("config")
def show_config(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Print the resolved settings as JSON, with their fingerprint."""
    settings = _load(config, _cli_overrides(pairs=set_ or []))
    console.print_json(json.dumps({"fingerprint": settings.fingerprint(), "settings": settings.resolved()}))


def _cli_overrides(pairs: list[str], **options: Any) -> dict[str, Any]:
    try:
        overrides = dotted_overrides(pairs)
    except ValueError as exc:
        _fail(str(exc), code=2)
    data = overrides.setdefault("data", {})
    if options.get("source") is not None:
        data["source"] = options["source"]
    if options.get("path") is not None:
        data["path"] = str(options["path"])
    if options.get("model") is not None:
        overrides.setdefault("model", {})["name"] = options["model"]
    if options.get("seed") is not None:
        overrides["seed"] = options["seed"]
    if not data:
        overrides.pop("data")
    return overrides


def _load(config: list[Path] | None, overrides: dict[str, Any]) -> Settings:
    files = list(config or [])
    if DEFAULT_CONFIG.is_file() and DEFAULT_CONFIG.resolve() not in {f.resolve() for f in files}:
        files.insert(0, DEFAULT_CONFIG)
    elif not files:
        _fail(f"no {DEFAULT_CONFIG} here: run from the project root or pass --config FILE", code=2)
    try:
        return load_settings(files, overrides)
    except ConfigFileError as exc:
        _fail(str(exc), code=2)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        _fail(f"invalid settings: {problems}", code=2)


def _print_summary(summary: dict[str, Any]) -> None:
    data, outputs = summary["dataset"], summary["outputs"]
    table = Table(title=f"{summary['model']} on {data['source']} dataset {data['id'][:12]}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in sorted(summary["metrics"].items()):
        table.add_row(name, f"{value:.4f}" if "@" in name else f"{int(value):,}")
    console.print(table)
    console.print(
        f"dataset: {data['rows']:,} interactions, {data['users']:,} users, {data['items']:,} items\n"
        f"split: {summary['split']['strategy']}, {summary['split']['train_rows']:,} train / "
        f"{summary['split']['test_rows']:,} test\n"
        f"report:  {outputs['report']}\nsummary: {outputs['summary']}\nstore:   {outputs['store']}",
        soft_wrap=True,  # keep URIs whole (copyable) whatever the terminal width
    )


def _state_message(state: Any) -> str:
    try:
        state.result()
    except Exception as exc:  # the flow's own exception carries the useful message
        return f"{type(exc).__name__}: {exc}"
    return state.message or "no message"


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]error:[/] {message}")
    raise typer.Exit(code)
