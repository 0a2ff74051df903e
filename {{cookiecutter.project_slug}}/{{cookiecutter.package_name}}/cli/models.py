"""`models ...`: the model registry of each dataset: versions, champion/challenger, promotions, history."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..artifacts import open_store
from ..settings import Settings
from .common import (
    ConfigOption,
    JsonOption,
    SetOption,
    console,
    err,
    fail,
    load,
    print_json,
    registry_of,
)

app = typer.Typer(help="The model registry: versions, champion/challenger, promotions, history.")

VersionArgument = Annotated[
    str, typer.Argument(help="A version number, `champion`, `challenger` or `latest`.")
]
ReasonOption = Annotated[str, typer.Option(help="Why (kept in the history).")]


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


@app.command("promote")
def promote(
    version: Annotated[int, typer.Argument(help="The version to make champion.")],
    reason: ReasonOption,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Make a version the champion of the configured dataset by hand, bypassing the policy (the reason is
    recorded); it is refit on its whole snapshot for serving first."""
    from .. import serving
    from ..artifacts.registry import CHAMPION, default_actor

    settings = load(config, set_)
    dataset, registry, store = (
        settings.data.dataset_name(),
        registry_of(settings),
        open_store(settings.storage),
    )
    held = registry.get(version)
    if held.dataset != dataset:
        fail(
            f"version {version} is a model of dataset {held.dataset}, not of {dataset} (the configured "
            f"dataset); --set data.name={held.dataset} promotes it there",
            code=2,
        )
    entry, fresh = serving.refit_for_serving(registry, store, version, actor=default_actor())
    refit = f"refit on {entry['interactions']:,} interactions in {entry['seconds']:.1f}s" if fresh else "kept"
    if CHAMPION in held.aliases and fresh:  # a champion from before serving refits: now served by one
        console.print(f"dataset {dataset}: version {version} is the champion; serving model {refit}")
        return
    move = registry.promote(version, actor=default_actor(), reason=reason)
    console.print(
        f"dataset {dataset}: champion is version {move.to_version} (was {move.from_version}); serving model "
        f"{entry['model']['id'][:12]} {refit}",
        highlight=False,
    )
    _refresh_dashboard(settings)


@app.command("rollback")
def rollback(reason: ReasonOption = "rollback", config: ConfigOption = None, set_: SetOption = None) -> None:
    """Give the configured dataset's champion alias back to its previous champion."""
    from .. import serving
    from ..artifacts.registry import default_actor

    settings = load(config, set_)
    dataset, registry = settings.data.dataset_name(), registry_of(settings)
    move = registry.rollback(actor=default_actor(), reason=reason, dataset=dataset)
    assert move.to_version is not None  # a rollback always names the champion it returns to
    # A champion from before serving refits gets one now, as a promotion would give it.
    _, fresh = serving.refit_for_serving(
        registry, open_store(settings.storage), move.to_version, default_actor()
    )
    console.print(
        f"dataset {dataset}: champion is version {move.to_version} again (was {move.from_version})"
        + ("; refit for serving" if fresh else ""),
        highlight=False,
    )
    _refresh_dashboard(settings)


@app.command("rebuild")
def rebuild(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Rebuild an empty or damaged registry from the runs in the artifact store: versions, decisions, serving
    models, and each dataset's aliases as those decisions moved them (moves by hand are not in the store)."""
    from ..artifacts.registry import default_actor, rebuild_from_store, registry_url

    settings = load(config, set_)
    store = open_store(settings.storage)
    done = rebuild_from_store(registry_url(settings.registry, settings.storage), store, default_actor())
    held_by = (("champion", done.champions), ("challenger", done.challengers))
    aliases = "; ".join(
        f"dataset {d}: "
        + ", ".join(f"{alias} v{held[d]}" if d in held else f"no {alias}" for alias, held in held_by)
        for d in sorted(set(done.champions) | set(done.challengers))
    )
    console.print(
        f"rebuilt {done.versions} versions and {done.decisions} decisions from {store.uri_of('runs')}: "
        f"{aliases or 'no aliases'}. `models history` marks the rows as rebuilt.",
        soft_wrap=True,
        highlight=False,
    )
    if done.unrecorded:
        console.print(
            f"{len(done.unrecorded)} runs have no registration record (promotion off, or made before runs "
            f"kept one): {', '.join(r[:8] for r in done.unrecorded)}",
            soft_wrap=True,
        )


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


def _refresh_dashboard(settings: Settings) -> None:
    """Rebuild the dashboard in the store after a move by hand, as flows do after theirs; a failure is only
    a warning: the move is made."""
    from ..dashboard import collect_for
    from ..dashboard_page import store_page

    try:
        board, store = collect_for(settings)
        store_page(store, board)
    except Exception as exc:  # the page is a view; the registry is what changed
        err.print(f"warning: dashboard not rebuilt: {type(exc).__name__}: {escape(str(exc))}")
