"""Commands for arriving data: `ingest` batches, `quarantine` (list, release), `watch` the landing zone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..artifacts import open_store
from .common import (
    ConfigOption,
    JsonOption,
    SetOption,
    console,
    fail,
    link,
    load,
    print_json,
    quiet_defaults,
    report_preflight,
    state_message,
)
from .runner import load_entrypoint

app = typer.Typer()


@app.command()
def ingest(
    path: Annotated[
        Path | None,
        typer.Option(
            help="One batch file to ingest, laid out as data.* says (default: all in the landing zone); "
            "from elsewhere, a copy; with --source movielens, a MovieLens directory."
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(help="file (a batch in the data.* layout) or movielens (its ratings file) [file]."),
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Take new batch files into the current snapshot; refuse bad ones into quarantine, with reasons."""
    from ..artifacts.landing import LandingZone
    from ..data import sources

    layout: dict[str, Any] = {}
    if source not in (None, "file", "movielens"):
        fail(f"--source {source}: ingest takes files (file or movielens)", code=2)
    if path is not None and not path.exists():
        fail(f"batch file does not exist: {path}", code=2)
    if source == "movielens" and path is not None:
        try:  # its ratings file, landed as a batch read with MovieLens' layout
            path, layout = sources.movielens_layout(path)
        except sources.SourceError as exc:
            fail(f"data.path: {exc}", code=2)
    elif path is not None and not path.is_file():
        fail(f"--path {path}: not a file (a batch is one file)", code=2)
    settings = load(config, set_, extra={"data": layout} if layout else None)
    if path is not None:
        from .. import preflight

        report_preflight(preflight.check_file(path, settings))
    zone = LandingZone(settings.ingest)
    if path is not None and not zone.holds(path):
        # The flow ingests only files in the landing zone; one named here from elsewhere lands as a copy.
        path = zone.land(path)
    ingest_flow = load_entrypoint("flows/ingestion.py:ingest")
    outcomes_of = load_entrypoint("flows/ingestion.py:outcomes_of")

    state = ingest_flow(settings.resolved(), path=str(path) if path else None, return_state=True)
    outcomes = outcomes_of(state)
    if outcomes is None:  # the flow crashed before it could report on batches
        fail(f"ingest {state.name}: {state_message(state)}", code=1)
    store = open_store(settings.storage)
    for o in outcomes:
        name = Path(o["file"]).name
        if o["accepted"]:
            note = "already ingested" if o["reasons"] else f"{o['rows']:,} rows, {o['added']:,} new events"
            console.print(
                f"[green]taken in[/] {name}: {note}; snapshot {str(o['snapshot'])[:12]}", soft_wrap=True
            )
        elif o["quarantined_to"]:
            console.print(f"[red]refused[/] {name} -> {o['quarantined_to']}", soft_wrap=True)
        else:
            console.print(f"[yellow]left[/] {name} in the landing zone", soft_wrap=True)
        if not o["accepted"]:
            for reason in o["reasons"]:
                console.print(f"  - {reason}", soft_wrap=True, highlight=False)
        if o.get("docs"):
            console.print(f"  data docs: {link(store, o['docs'] + '/index.html')}", soft_wrap=True)
    if not outcomes:
        arriving = len(zone.look().settling)
        later = f" ({arriving} file(s) still arriving: ingest again once they settle)" if arriving else ""
        console.print(f"nothing waiting in {settings.ingest.landing}{later}", soft_wrap=True)
    if not state.is_completed():
        fail(f"ingest {state.name}: {state.message}", code=1)


@app.command()
def quarantine(
    release: Annotated[
        str | None, typer.Option(help="Move this (fixed) batch back to the landing zone.")
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    as_json: JsonOption = False,
) -> None:
    """List quarantined batches with their reasons, or release one after it is fixed."""
    from ..artifacts.landing import LandingZone

    zone = LandingZone(load(config, set_).ingest)
    if release is not None:
        try:
            target = zone.release(release)
        except FileNotFoundError as exc:
            fail(str(exc), code=2)
        console.print(f"released {release} -> {target}; run `ingest` to take it in")
        return
    entries = zone.quarantined()
    if as_json:
        print_json(entries)
        return
    if not entries:
        console.print(f"nothing in quarantine ({zone.quarantine_dir})")
    for entry in entries:
        console.print(f"[bold]{entry['name']}[/] (quarantined {entry['quarantined_at']})", soft_wrap=True)
        for reason in entry["reasons"]:
            console.print(f"  - {reason}", soft_wrap=True, highlight=False)


@app.command()
def watch(
    interval: Annotated[float, typer.Option(help="Seconds between looks at the landing zone.")] = 2.0,
    once: Annotated[
        bool, typer.Option(help="Announce what is ready (after files still arriving settle), then exit.")
    ] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Emit the new-data event for each file that lands in the landing zone (the served deployments react)."""
    from ..artifacts.announced import Announced
    from ..artifacts.landing import LandingZone

    settings = load(config, set_)
    quiet_defaults()
    emit_new_data = load_entrypoint("flows/schedule.py:emit_new_data")

    # One zone for the whole watch: it remembers what it saw, so a file seen changing waits again.
    zone, announced = LandingZone(settings.ingest), Announced(Path(settings.ingest.landing))
    console.print(f"watching {zone.landing} (event {settings.deploy.new_data_event})")
    while True:
        ready, settling = zone.look()  # ready: unchanged for ingest.settle_seconds, not a temporary name
        for file in ready:
            if not announced.seen(file):
                size = file.stat().st_size
                emit_new_data(settings, str(file.resolve()), size)
                announced.add(file)
                console.print(f"announced {file.name} ({size:,} bytes)")
        if once and not settling:  # --once still waits for files that are arriving
            return
        time.sleep(interval)
