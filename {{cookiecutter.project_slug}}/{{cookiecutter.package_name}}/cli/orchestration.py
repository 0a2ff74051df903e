"""Commands that drive the flows beyond one run: `monitor`, `serve` the deployments, `simulate` the
unattended loop, `sweep` a grid on Dask."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..artifacts import open_store
from ..settings import PACKAGE
from .common import (
    ConfigOption,
    PathOption,
    SetOption,
    SourceOption,
    checked_data,
    console,
    fail,
    link,
    load,
    quiet_defaults,
    state_message,
)
from .runner import load_entrypoint

app = typer.Typer()


@app.command()
def monitor(
    source: SourceOption = None,
    path: PathOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Check the configured dataset's champion for drift and decay now (the `monitor` flow); exit 1 when it
    drifted."""
    settings = load(config, set_, source=source, path=path)
    monitor_flow = load_entrypoint("flows/monitoring.py:monitor")

    state = monitor_flow(settings.resolved(), return_state=True)
    if not state.is_completed():
        fail(f"monitor {state.name}: {state_message(state)}", code=2)
    result = state.result()
    verdict = "[red]drift or decay[/]" if result["drifted"] else "[green]no drift[/]"
    dataset = result.get("dataset", settings.data.dataset_name())
    console.print(f"dataset {dataset}: champion v{result.get('champion')}: {verdict}", highlight=False)
    for reason in result["reasons"]:
        console.print(f"  - {reason}", soft_wrap=True, highlight=False)
    store = open_store(settings.storage)
    for name in ("events_report", "predictions_report"):
        if name in result:
            console.print(f"  {name.replace('_', ' ')}: {link(store, result[name])}", soft_wrap=True)
    if "event" in result:  # emitted, or held back as already reported
        console.print(f"  event: {result['event']['message']}", soft_wrap=True, highlight=False)
    if result["drifted"]:
        raise typer.Exit(1)


@app.command()
def serve(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Serve every deployment on this machine: nightly retrain, hourly monitor, on-new-data, on-drift.

    Reports to PREFECT_API_URL, or to the project's server (`server status`); runs until interrupted.
    """
    settings = load(config, set_)
    serve_all = load_entrypoint("flows/schedule.py:serve_all")

    serve_all(settings, {"config": settings.resolved()})


@app.command()
def simulate(
    source: SourceOption = None,
    path: PathOption = None,
    data: Annotated[
        Path | None, typer.Option(hidden=True, help="Older spelling of --source movielens --path DIR.")
    ] = None,
    batches: Annotated[int, typer.Option(min=3, help="Batches after the initial load.")] = 4,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Replay a dataset as time-ordered batches through the served deployments and print a timeline.

    Normal batches go ingest -> validate -> train -> evaluate -> promotion; a shifted batch raises drift and
    a retrain; a corrupt batch is quarantined while the champion keeps serving. Reports to PREFECT_API_URL,
    or to the project's server (`server status`), and starts `serve` against it; stops `serve` at the end.
    """
    from ..data import sources
    from ..simulation import plan_batches

    if data is not None and source is None and path is None:
        source, path = "movielens", data
    settings = load(config, set_, source=source, path=path)
    if settings.data.source == "snapshot":
        fail("simulate replays a dataset: --source synthetic, movielens or file", code=2)
    settings = checked_data(settings)
    quiet_defaults()
    # The project's server, running already or started once: a server of its own cost 10-15 s per simulation.
    format_step = load_entrypoint("flows/simulation.py:format_step")
    served = load_entrypoint("flows/simulation.py:served")
    replay = load_entrypoint("flows/simulation.py:simulate")

    planned = plan_batches(sources.load(settings.data, settings.seed), n_batches=batches)
    for batch in planned:
        console.print(f"{batch.name:<18} {batch.rows:>8,} events  {batch.describe()}")
    started = time.monotonic()
    logs = Path(settings.ingest.landing).resolve().parent / "simulate-logs"
    with served(settings, Path.cwd(), console.print, logs) as url:
        console.print(f"Prefect UI: {url.removesuffix('/api')}  (server and serve logs in {logs})")
        steps = replay(settings, planned, lambda step: console.print(format_step(step), highlight=False))
    console.print(f"\n[bold]timeline[/] ({time.monotonic() - started:.0f} s)")
    for step in steps:
        console.print(format_step(step), soft_wrap=True, highlight=False)


@app.command()
def sweep(
    config: ConfigOption = None,
    dask_address: Annotated[
        str | None, typer.Option(help="A running Dask scheduler (tcp://host:8786); default: a local cluster.")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes of the local cluster.")] = None,
    set_: SetOption = None,
) -> None:
    """Train and evaluate every setting of `sweep.grid` on one split, in parallel on Dask; the best becomes
    the challenger."""
    from ..sweeps import trials

    sweep_options = {k: v for k, v in {"dask_address": dask_address, "workers": workers}.items() if v}
    settings = load(config, set_, extra={"sweep": sweep_options} if sweep_options else None)
    try:
        count = len(trials(settings.sweep.grid, settings.model))
    except ValueError as exc:  # an unknown parameter or a value out of range: before any server starts
        fail(str(exc), code=2)
    run_sweep = load_entrypoint("flows/sweeps.py:run_sweep")
    where = settings.sweep.dask_address or f"a local Dask cluster of {settings.sweep.workers} workers"
    console.print(f"[bold]{PACKAGE}[/] sweep: {count} trials on {where}")
    state = run_sweep(settings)
    if not state.is_completed():
        fail(f"sweep {state.name}: {state_message(state)}", code=1)
    summary = state.result()
    table = Table(title=f"sweep on snapshot {summary['snapshot'][:12]}, best by {summary['metric']}")
    for column in summary["table"][0]:
        table.add_column(column)
    for row in summary["table"]:
        table.add_row(*(str(value) for value in row.values()))
    console.print(table)
    if "challenger" in summary:
        held = summary["challenger"]
        console.print(
            f"challenger: version {held['version']} ({summary['trials'][summary['best']]['label']}), "
            f"{summary['metric']} {held['metrics'][summary['metric']]:.4f}; "
            f"`{PACKAGE} models promote {held['version']} --reason ...` makes it the champion"
        )
