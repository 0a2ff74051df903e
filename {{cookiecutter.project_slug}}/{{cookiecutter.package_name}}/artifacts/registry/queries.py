"""The statements the registry and its rebuild share, each run on a connection inside the caller's
transaction (which holds the write lock when it writes): moving an alias, appending to the history, and
reading a version's dataset, a dataset's aliases and the datasets held."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from . import tables as t
from .records import AliasMove, RegistryError, VersionNotFound, now


def move(
    conn: Connection,
    dataset: str,
    alias: str,
    version: int | None,
    action: str,
    actor: str,
    reason: str,
    decision_id: str | None,
) -> AliasMove:
    """Point `alias` of `dataset` at `version` (None: at none), and say so in the history."""
    previous = aliases_in(conn, dataset).get(alias)
    held = (t.aliases.c.dataset == dataset) & (t.aliases.c.alias == alias)
    if version is None:
        conn.execute(t.aliases.delete().where(held))
    elif previous is None:
        row = {"dataset": dataset, "alias": alias, "version": version, "moved_at": now()}
        conn.execute(insert(t.aliases).values(**row))
    else:
        conn.execute(update(t.aliases).where(held).values(version=version, moved_at=now()))
    return log(conn, dataset, alias, action, previous, version, actor, reason, decision_id)


def log(
    conn: Connection,
    dataset: str,
    alias: str,
    action: str,
    from_version: int | None,
    to_version: int | None,
    actor: str,
    reason: str,
    decision_id: str | None = None,
) -> AliasMove:
    """Append a row to the history (every alias move, and reuses, which move none)."""
    at = now()
    row = {
        "at": at,
        "dataset": dataset,
        "alias": alias,
        "action": action,
        "from_version": from_version,
        "to_version": to_version,
        "actor": actor,
        "reason": reason,
        "decision_id": decision_id,
    }
    move_id = inserted_id(conn.execute(insert(t.moves).values(**row)))
    return AliasMove(
        move_id, at, dataset, alias, action, from_version, to_version, actor, reason, decision_id
    )


def inserted_id(result: Any) -> int:
    """The primary key an INSERT gave its row (every registry table has a single integer key)."""
    key = result.inserted_primary_key
    assert key is not None  # an INSERT of one row into a table with a primary key always reports it
    return int(key[0])


def history(conn: Connection, alias: str | None, dataset: str | None = None) -> list[AliasMove]:
    """The history, oldest first; with `dataset`, its rows and the notes about the whole registry."""
    query = select(t.moves).order_by(t.moves.c.id)
    if alias is not None:
        query = query.where(t.moves.c.alias == alias)
    if dataset is not None:
        query = query.where(t.moves.c.dataset.in_([dataset, ""]))
    return [AliasMove(**row) for row in conn.execute(query).mappings().all()]


def dataset_of_version(conn: Connection, version: int) -> str:
    """The dataset `version` was trained on; VersionNotFound if there is no such version."""
    found = conn.execute(select(t.versions.c.dataset).where(t.versions.c.version == version)).first()
    if found is None:
        raise VersionNotFound(f"no model version {version}")
    return str(found[0])


def aliases_in(conn: Connection, dataset: str) -> dict[str, int]:
    """Where the aliases of `dataset` point ({alias: version}); an alias pointing at none is absent."""
    rows = conn.execute(select(t.aliases.c.alias, t.aliases.c.version).where(t.aliases.c.dataset == dataset))
    return {a: v for a, v in rows.all()}


def aliases_of(conn: Connection, version: int) -> tuple[str, ...]:
    """The aliases that point at `version`, sorted (empty for most versions)."""
    rows = conn.execute(select(t.aliases.c.alias).where(t.aliases.c.version == version)).scalars()
    return tuple(sorted(rows.all()))


def datasets(conn: Connection) -> list[str]:
    """The names of the datasets with at least one version, sorted."""
    rows = conn.execute(select(t.versions.c.dataset).distinct().order_by(t.versions.c.dataset))
    return [str(d) for d in rows.scalars().all()]


def sole_dataset(conn: Connection) -> str | None:
    """The dataset when the registry holds versions of one only (None when it holds none). Callers that
    name no dataset are refused once there are several: which champion they meant cannot be guessed."""
    held = datasets(conn)
    if len(held) > 1:
        raise RegistryError(
            f"the registry holds models of {len(held)} datasets ({', '.join(held)}): name one "
            "(data.name, or the data settings it was trained with)"
        )
    return held[0] if held else None


def champion_lineup(moves: list[AliasMove]) -> list[int]:
    """The stack of champions: a promotion pushes its version, a rollback pops back to the one before."""
    lineup: list[int] = []
    for change in moves:
        if change.action == "rollback":
            lineup.pop()
        elif change.to_version is not None:
            lineup.append(change.to_version)
    return lineup
