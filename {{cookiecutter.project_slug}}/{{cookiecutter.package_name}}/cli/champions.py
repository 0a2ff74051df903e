"""`models promote|rollback|rebuild`: the champion moved by hand, and the registry rebuilt from the store.

Registered on the `models` group by cli/models.py. Every move refits the new champion for serving when it has
no serving model yet, and rebuilds the dashboard, as the flows do after their moves.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from ..artifacts import open_store
from ..settings import Settings
from .common import ConfigOption, SetOption, console, err, fail, load, registry_of

ReasonOption = Annotated[str, typer.Option(help="Why (kept in the history).")]


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
