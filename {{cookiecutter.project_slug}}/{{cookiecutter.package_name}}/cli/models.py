"""`models ...`: the model registry of each dataset: versions, cards, history; and the champion's moves by
hand (`promote`, `rollback`, `rebuild`: cli/champions.py)."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from ..artifacts import open_store
from . import champions
from .common import (
    ConfigOption,
    JsonOption,
    SetOption,
    console,
    err,
    load,
    print_json,
    registry_of,
)

app = typer.Typer(help="The model registry: versions, champion/challenger, promotions, history.")

VersionArgument = Annotated[
    str, typer.Argument(help="A version number, `champion`, `challenger` or `latest`.")
]


@app.command("list")
def list_versions(config: ConfigOption = None, set_: SetOption = None, as_json: JsonOption = False) -> None:
    """Every registered model version of every dataset, with its aliases and primary metric."""
    settings = load(config, set_)
    metric = settings.evaluation.primary_metric
    registry = registry_of(settings)
    versions = registry.versions()
    if as_json:
        print_json([asdict(v) for v in versions])
        return
    table = Table(title=f"model versions ({registry.url.split('://')[0]})")
    for column in ("version", "dataset", "aliases", "model", "created (UTC)", "run", "snapshot", metric):
        table.add_column(column, no_wrap=True)
    for v in versions:
        table.add_row(
            str(v.version),
            v.dataset,
            ",".join(v.aliases),
            v.model_name,
            v.created_at.replace("T", " ")[:16],
            v.run_id[:8],
            v.snapshot_id[:12],
            f"{v.metrics.get(metric, float('nan')):.4f}",
        )
    console.print(table)


@app.command("show")
def show(version: VersionArgument, config: ConfigOption = None, set_: SetOption = None) -> None:
    """One version (an alias: the configured dataset's): artifacts, run, metrics, serving model, decisions."""
    settings = load(config, set_)
    registry = registry_of(settings)
    v = registry.get(version, settings.data.dataset_name())
    held = f" ({', '.join(v.aliases)})" if v.aliases else ""
    console.print(f"[bold]dataset {v.dataset}: version {v.version}[/] {v.model_name}{held}", highlight=False)
    served = v.serving or {}
    serving = (
        f"{served['model']['id']} {served['model']['uri']} (refit on the snapshot)"
        if served
        else "none (served by the evaluated model until promoted)"
    )
    for label, value in (
        ("created", f"{v.created_at} by {v.created_by}"),
        ("run", v.run_id),
        ("model", f"{v.model_id} {v.model_uri} (evaluated)"),
        ("serving", serving),
        ("snapshot", v.snapshot_id),
        ("manifest", f"{v.manifest_id} {v.manifest_uri}"),
        ("config", v.config_fingerprint),
    ):
        console.print(f"  {label:<9}{value}", soft_wrap=True, highlight=False)
    console.print("  metrics  " + ", ".join(f"{k} {x:.4f}" for k, x in sorted(v.metrics.items()) if "@" in k))
    for d in registry.decisions(v.version):
        verdict = "promoted" if d.promoted else "not promoted"
        console.print(
            f"  decision {d.at} vs {d.reference}: {verdict}. {d.reason}", soft_wrap=True, highlight=False
        )


@app.command("card")
def card(version: VersionArgument, config: ConfigOption = None, set_: SetOption = None) -> None:
    """A version's model card (an alias: the configured dataset's), in Markdown: intended use, dataset, split
    and leakage check, metrics with intervals, the comparison that judged it, the decision, environment and
    lineage ids."""
    from .. import model_card

    settings = load(config, set_)
    registry, store = registry_of(settings), open_store(settings.storage)
    held = registry.get(version, settings.data.dataset_name())
    text = model_card.stored(store, held)
    if text is None:  # judged before cards were kept, or not judged: built from what the store holds
        err.print(f"version {held.version} has no stored card; built from its run and decisions now")
        text = model_card.build(registry, store, held)
    # Plain text, not the console: the Markdown's brackets are not rich markup.
    sys.stdout.write(text)


@app.command("history")
def history(config: ConfigOption = None, set_: SetOption = None, as_json: JsonOption = False) -> None:
    """The configured dataset's alias moves and version reuses: when, what, by whom or which run, and why."""
    settings = load(config, set_)
    dataset = settings.data.dataset_name()
    moves = registry_of(settings).history(dataset=dataset)
    if as_json:
        print_json({"dataset": dataset, "moves": [asdict(m) for m in moves]})
        return
    console.print(f"dataset {dataset}:", highlight=False)
    for m in moves:
        before = "-" if m.from_version is None else f"v{m.from_version}"
        after = "-" if m.to_version is None else f"v{m.to_version}"
        console.print(
            f"{m.at.replace('T', ' ')[:19]}  {m.alias or '-':<10} {m.action:<8} {before:>4} -> {after:<4} "
            f"by {m.actor}: {m.reason}",
            soft_wrap=True,
            highlight=False,
        )
    if not moves:
        console.print("no alias moves yet")


# Moving the champion (cli/champions.py), registered here so that `models --help` lists every subcommand.
app.command("promote")(champions.promote)
app.command("rollback")(champions.rollback)
app.command("rebuild")(champions.rebuild)
