"""Rebuilding a lost registry from the artifact store: every run's manifest and status record say what it
did to the registry (the version it registered or reused, the decision about it, its promotion, the model
refit to serve it), and `rebuild_from_store` replays them, oldest first, into an empty registry."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy import inspect as inspect_schema
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DatabaseError

from .. import runs
from ..manifest import RunManifest
from ..store import ArtifactRef, ArtifactStore, canonical_json
from . import queries, schema
from . import tables as t
from .core import Registry
from .records import CHALLENGER, CHAMPION, NO_ALIAS, REBUILT, RegistryError, version_row, where


@dataclass(frozen=True)
class Rebuilt:
    """What `rebuild_from_store` restored, and the runs it could not use."""

    versions: int
    decisions: int
    champions: dict[str, int]  # dataset -> version
    challengers: dict[str, int]
    unrecorded: list[str]  # runs with a manifest but no registration record (older, or promotion off)


def rebuild_from_store(url: str, store: ArtifactStore, actor: str) -> Rebuilt:
    """Fill an empty (or damaged: tables lost) registry from the store's runs, oldest first.

    Each run's status names the version it registered or reused, the decision stored about it, whether it
    was promoted and the model refit to serve it: versions come back with their numbers, datasets, metrics
    and serving models, decisions from their stored records, and each dataset's aliases as those decisions
    moved them. Moves made by hand (`models promote`, `rollback`), the times of the original moves and the
    drift acknowledgements were never in the store: the history says it was rebuilt, each row names the run
    it came from. Refuses a registry that is whole and holds versions.
    """
    engine = schema.make_engine(url)
    try:
        with engine.connect() as conn:
            present = set(inspect_schema(conn).get_table_names())
            whole = set(t.metadata.tables) <= present
            if whole and (count := len(conn.execute(select(t.versions.c.version)).all())):
                raise RegistryError(
                    f"{where(url)} holds {count} model versions: a rebuild only fills an empty or damaged "
                    "registry (move this one aside first)"
                )
        # Leftovers of a damaged registry (rows about versions that are gone) cannot be trusted: start anew.
        with engine.begin() as conn:
            schema.drop_tables(conn)
    except DatabaseError as exc:
        raise RegistryError(f"cannot open the registry {where(url)}: {exc.orig or exc}") from exc
    finally:
        engine.dispose()
    registry = Registry(url)
    manifests, statuses = runs.list_runs(store), runs.run_statuses(store)
    source = f"rebuilt from the store {store.uri_of('')}"
    unrecorded, decisions = [], 0
    with registry.locked() as conn:
        queries.log(conn, "", NO_ALIAS, REBUILT, None, None, actor, f"{source}: {len(manifests)} runs")
        for manifest in manifests:
            noted = statuses.get(manifest.run_id, {}).get("registry", {})
            if "version" not in noted:
                unrecorded.append(manifest.run_id)
                continue
            decisions += _replay(conn, store, manifest, noted, actor)
        if conn.dialect.name == "postgresql":  # explicit numbers do not advance the serial's sequence
            conn.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence('model_versions', 'version'), "
                    "(SELECT COALESCE(MAX(version), 1) FROM model_versions))"
                )
            )
        held = conn.execute(select(t.aliases.c.dataset, t.aliases.c.alias, t.aliases.c.version)).all()
        queries.log(
            conn,
            "",
            NO_ALIAS,
            REBUILT,
            None,
            None,
            actor,
            f"{source}; hand-made promotions and rollbacks, original move times and drift acknowledgements "
            "were not kept there",
        )
    return Rebuilt(
        versions=len(registry.versions()),
        decisions=decisions,
        champions={d: v for d, a, v in held if a == CHAMPION},
        challengers={d: v for d, a, v in held if a == CHALLENGER},
        unrecorded=unrecorded,
    )


def _replay(
    conn: Connection,
    store: ArtifactStore,
    manifest: RunManifest,
    noted: dict[str, Any],
    actor: str,
) -> int:
    """Put back what one run did to the registry (version, decision, promotion, serving model); returns the
    decisions added."""
    run_id, version, at = manifest.run_id, int(noted["version"]), manifest.finished_at
    known = conn.execute(select(t.versions.c.version).where(t.versions.c.version == version)).first()
    if known is None:
        # The id of the manifest as stored (the bytes the run wrote, not today's reading of them).
        path = f"runs/{run_id}/{runs.MANIFEST_NAME}"
        stored = json.loads(store.read_text(path))
        manifest_id = hashlib.sha256(canonical_json(stored)).hexdigest()
        row = version_row(manifest, manifest_id, path, f"run {run_id}")
        conn.execute(insert(t.versions).values(**{**row, "version": version, "created_at": at}))
        dataset = row["dataset"]
        reason = f"run {run_id} registered it ({at})"
        queries.move(conn, dataset, CHALLENGER, version, REBUILT, actor, reason, None)
    else:
        dataset = queries.dataset_of_version(conn, version)
        reason = f"run {run_id} reused it ({at})"
        queries.log(conn, dataset, NO_ALIAS, "reuse", None, version, actor, reason)
    if "serving" in noted:
        served = json.dumps(noted["serving"], sort_keys=True)
        conn.execute(update(t.versions).where(t.versions.c.version == version).values(serving=served))
    added = 0
    if "decision" in noted:
        ref = ArtifactRef(**noted["decision"])
        decision = store.get_json(ref)
        row = {
            "at": at,
            "version": version,
            "promoted": int(decision["promote"]),
            "reference": decision["reference"],
            "reason": decision["reason"],
            "decision_id": ref.id,
        }
        conn.execute(insert(t.decisions).values(**row))
        added = 1
    if noted.get("promoted"):
        held = queries.aliases_in(conn, dataset)
        if held.get(CHAMPION) != version:
            reason = f"run {run_id} promoted it ({at})"
            decision_id = noted.get("decision", {}).get("id")
            queries.move(conn, dataset, CHAMPION, version, REBUILT, actor, reason, decision_id)
        if held.get(CHALLENGER) == version:
            cleared = f"promoted to {CHAMPION}"
            queries.move(conn, dataset, CHALLENGER, None, REBUILT, actor, cleared, None)
    return added
