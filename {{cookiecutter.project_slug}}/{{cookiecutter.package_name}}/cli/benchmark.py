"""`benchmark`: several models trained and evaluated under one protocol, beside the pipeline, not in it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..settings import MODEL_NAMES
from .common import ConfigOption, PathOption, SetOption, SourceOption, checked_data, console, fail, load

app = typer.Typer()


@app.command()
def benchmark(
    out: Annotated[Path, typer.Option(help="JSON file to write; PNG plots go beside it.")],
    source: SourceOption = None,
    path: PathOption = None,
    data: Annotated[
        str | None, typer.Option(hidden=True, help="Older spelling: a MovieLens directory, or `synthetic`.")
    ] = None,
    protocol: Annotated[
        str, typer.Option(help="random-80-20, temporal-80-20, leave-last-out or user-random-80-20.")
    ] = "random-80-20",
    seed: Annotated[int, typer.Option(help="Seed of the split, the models and the bootstrap.")] = 42,
    models: Annotated[
        str, typer.Option(help="Comma-separated; the first is the baseline of the paired tests.")
    ] = ",".join(MODEL_NAMES),
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Train and evaluate models under one protocol: metrics with 95% intervals, timings, memory, plots."""
    from .. import benchmark as bench
    from ..data import sources
    from ..data.split import NEEDS_TIME

    if data is not None and source is None and path is None:
        source, path = ("synthetic", None) if data == "synthetic" else ("movielens", Path(data))
    settings = load(config, set_, source=source, path=path, seed=seed)
    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = sorted(set(names) - set(MODEL_NAMES))
    if unknown or not names:
        fail(f"unknown model(s) {unknown}; choose from {', '.join(MODEL_NAMES)}", code=2)
    if protocol not in bench.PROTOCOLS:
        fail(f"unknown protocol {protocol!r}; choose one of {sorted(bench.PROTOCOLS)}", code=2)
    if settings.data.source == "snapshot":
        fail("benchmark reads a dataset: --source synthetic, movielens or file", code=2)
    chosen = bench.PROTOCOLS[protocol]
    if (
        settings.data.source == "file"
        and settings.data.columns.timestamp is None
        and chosen.strategy in NEEDS_TIME
    ):
        fail(
            f"--protocol {protocol} needs event times and data.columns.timestamp is null: use --protocol "
            "random-80-20 or user-random-80-20",
            code=2,
        )
    settings = checked_data(settings, chosen)
    results = bench.run_benchmark(sources.load(settings.data, seed), protocol, names, seed, settings.model)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    plots = bench.plot(results, str(out.with_suffix("")))

    rows = results["interactions"]
    table = Table(title=f"{settings.data.dataset_name()} · {protocol} · seed {seed} · {rows:,} interactions")
    for column in bench.TABLE_COLUMNS:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in bench.table_rows(results):
        table.add_row(*row)
    console.print(table)
    for line in bench.paired_lines(results):
        console.print(line)
    console.print(f"results: {out}\nplots:   {', '.join(plots)}", soft_wrap=True)
