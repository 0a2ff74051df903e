"""The Registry: numbered versions, the per-dataset `champion` and `challenger` aliases, promotion
decisions, the history of every alias move and reuse, and the drift events the monitor emitted.

Every alias move runs in one transaction that first bumps the single row of `registry_lock`. That write takes
the database's write lock (SQLite's reserved lock, PostgreSQL's row lock) before anything is read, so two
processes moving aliases at once are serialised: each reads the champion the other left, and a move made
with `expect=` fails with `StaleAlias` when the champion changed since the caller looked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, DatabaseError

from ...alerts import Acknowledgement, EmitDecision, should_emit
from ..manifest import PipelineResult
from ..store import ArtifactStore
from . import queries, schema
from . import tables as t
from .records import (
    ALIASES,
    CHALLENGER,
    CHAMPION,
    NO_ALIAS,
    UNDECIDED,
    AliasMove,
    DecisionRecord,
    ModelVersion,
    RegistryError,
    StaleAlias,
    VersionNotFound,
    acknowledgement_from_row,
    now,
    version_from_row,
    version_row,
    where,
)

_ANY: Final = object()  # `expect` not given: move whatever the alias points to now


class Registry:
    """The model registry in a SQL database: a SQLite file, or PostgreSQL when several hosts share it."""

    def __init__(self, url: str, store: ArtifactStore | None = None) -> None:
        """The registry at `url`, its schema brought to the newest migration (schema.py); `store` (the
        artifact store its runs wrote to) is needed once, to upgrade a registry made before datasets had
        champions of their own."""
        self.url = url
        try:
            self.engine = schema.make_engine(url)
        except (ArgumentError, ImportError) as exc:  # an unknown dialect, or its driver not installed
            raise RegistryError(f"cannot use the registry {where(url)}: {exc}") from exc
        try:
            schema.migrate(self.engine, url, store)
        except DatabaseError as exc:  # unreachable, wrong password, not a database: one line, no secret
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise RegistryError(f"cannot open the registry {where(url)}: {reason}") from exc

    def is_empty(self) -> bool:
        """Whether no version was ever registered (a new registry, or one lost: the store can tell which)."""
        with self.engine.connect() as conn:
            return conn.execute(select(t.versions.c.version).limit(1)).first() is None

    def datasets(self) -> list[str]:
        """The names of the datasets the registry holds versions of, sorted."""
        with self.engine.connect() as conn:
            return queries.datasets(conn)

    # -- versions --------------------------------------------------------------------------------------------

    def register(self, result: PipelineResult, actor: str) -> ModelVersion:
        """Add the model of a finished pipeline run (by its manifest), unless a version already holds the same
        model bytes on the same snapshot of the same dataset: then that version is reused (its `run_id` is
        another run's), and the reuse is kept in the history.

        The same run registers once. A new version becomes its dataset's `challenger` until a promotion
        decision moves it on; a reuse moves no alias.
        """
        run_id, dataset = result.run_id, result.dataset.name
        model_id, snapshot_id = result.artifacts["model"].id, result.artifacts["snapshot"].id
        with self.locked() as conn:
            # Read under the write lock: an identical run registering at the same moment waits here, then
            # finds the version this one added.
            same_run = conn.execute(
                select(t.versions.c.version).where(t.versions.c.run_id == run_id)
            ).scalar()
            same_content = conn.execute(
                select(t.versions.c.version)
                .where(
                    t.versions.c.model_id == model_id,
                    t.versions.c.snapshot_id == snapshot_id,
                    t.versions.c.dataset == dataset,
                )
                .order_by(t.versions.c.version)
                .limit(1)
            ).scalar()
            if same_run is not None:
                version = same_run  # this run's own version (a retried task)
            elif same_content is not None:
                version = same_content
                reason = f"run {run_id}: same model {model_id[:12]} on snapshot {snapshot_id[:12]}"
                queries.log(conn, dataset, NO_ALIAS, "reuse", None, version, actor, reason)
            else:
                row = version_row(result, result.outputs.manifest_id, result.outputs.manifest, actor)
                version = queries.inserted_id(conn.execute(insert(t.versions).values(**row)))
                queries.move(conn, dataset, CHALLENGER, version, "register", actor, f"run {run_id}", None)
        return self.get(version)

    def get(self, key: int | str, dataset: str | None = None) -> ModelVersion:
        """A version by number, or `champion`, `challenger` or `latest` of `dataset` (None: of the one
        dataset the registry holds; refused when it holds several)."""
        if key in ALIASES:
            found = self.alias(str(key), dataset)
            if found is None:
                raise VersionNotFound(f"no model{_of(dataset)} holds the {key} alias yet")
            return found
        if key == "latest":
            versions = self.versions(dataset or self._sole_dataset())
            if not versions:
                raise VersionNotFound(f"the registry has no model versions{_of(dataset)} yet")
            return versions[-1]
        try:
            number = int(key)
        except ValueError:
            raise VersionNotFound(f"not a version number or alias: {key!r}") from None
        with self.engine.connect() as conn:
            row = conn.execute(select(t.versions).where(t.versions.c.version == number)).mappings().first()
            if row is None:
                raise VersionNotFound(f"no model version {number}")
            return version_from_row(row, queries.aliases_of(conn, number))

    def versions(self, dataset: str | None = None) -> list[ModelVersion]:
        """Every version, oldest first; with `dataset`, that dataset's only."""
        query = select(t.versions).order_by(t.versions.c.version)
        if dataset is not None:
            query = query.where(t.versions.c.dataset == dataset)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            held = conn.execute(select(t.aliases.c.alias, t.aliases.c.version)).all()
        return [version_from_row(r, tuple(sorted(a for a, v in held if v == r["version"]))) for r in rows]

    def alias(self, name: str, dataset: str | None = None) -> ModelVersion | None:
        """The version holding alias `name` for `dataset` (None: the one dataset the registry holds)."""
        with self.engine.connect() as conn:
            dataset = dataset or queries.sole_dataset(conn)
            version = None if dataset is None else queries.aliases_in(conn, dataset).get(name)
        return None if version is None else self.get(version)

    def set_serving(self, version: int, serving: dict[str, Any]) -> ModelVersion:
        """Record the model that serves `version` (refit on its whole snapshot, see serving.py)."""
        with self.engine.begin() as conn:
            queries.dataset_of_version(conn, version)
            conn.execute(
                update(t.versions)
                .where(t.versions.c.version == version)
                .values(serving=json.dumps(serving, sort_keys=True))
            )
        return self.get(version)

    # -- alias moves -----------------------------------------------------------------------------------------

    def promote(
        self,
        version: int,
        actor: str,
        reason: str,
        expect: int | None | object = _ANY,
        decision_id: str | None = None,
    ) -> AliasMove:
        """Make `version` the champion of its dataset; with `expect`, only if that champion is still that
        version (or None). A promoted version stops being the challenger.
        """
        with self.locked() as conn:
            dataset = queries.dataset_of_version(conn, version)
            current = queries.aliases_in(conn, dataset).get(CHAMPION)
            if expect is not _ANY and current != expect:
                raise StaleAlias(f"the champion of {dataset} is now version {current}, not {expect}")
            if current == version:
                raise RegistryError(f"version {version} is already the champion of {dataset}")
            move = queries.move(conn, dataset, CHAMPION, version, "promote", actor, reason, decision_id)
            if queries.aliases_in(conn, dataset).get(CHALLENGER) == version:
                cleared = f"promoted to {CHAMPION}"
                queries.move(conn, dataset, CHALLENGER, None, "clear", actor, cleared, decision_id)
            return move

    def rollback(self, actor: str, reason: str, dataset: str | None = None) -> AliasMove:
        """Give the champion alias of `dataset` back to its previous champion (repeat to go further back)."""
        with self.locked() as conn:
            dataset = dataset or queries.sole_dataset(conn) or ""
            lineup = queries.champion_lineup(queries.history(conn, CHAMPION, dataset))
            if len(lineup) < 2:
                raise RegistryError(f"there is no previous champion{_of(dataset)} to roll back to")
            return queries.move(conn, dataset, CHAMPION, lineup[-2], "rollback", actor, reason, None)

    def retire_undecided(self, version: int, actor: str, reason: str) -> AliasMove:
        """A version whose judgement failed: it stops being the challenger and the history says why (action
        `undecided`). It stays registered, so a later run of the same model and data reuses and judges it."""
        with self.locked() as conn:
            dataset = queries.dataset_of_version(conn, version)
            if queries.aliases_in(conn, dataset).get(CHALLENGER) == version:
                return queries.move(conn, dataset, CHALLENGER, None, UNDECIDED, actor, reason, None)
            return queries.log(conn, dataset, NO_ALIAS, UNDECIDED, None, version, actor, reason)

    def record_decision(
        self, version: int, promoted: bool, reference: str, reason: str, decision_id: str
    ) -> DecisionRecord:
        """Keep a promotion decision (stored in full as an artifact) with the version it judged."""
        at = now()
        row = {
            "at": at,
            "version": version,
            "promoted": int(promoted),
            "reference": reference,
            "reason": reason,
            "decision_id": decision_id,
        }
        with self.engine.begin() as conn:
            record_id = queries.inserted_id(conn.execute(insert(t.decisions).values(**row)))
        return DecisionRecord(record_id, at, version, int(promoted), reference, reason, decision_id)

    def decisions(self, version: int | None = None, dataset: str | None = None) -> list[DecisionRecord]:
        """The promotion decisions, oldest first: about `version`, or about the versions of `dataset`."""
        query = select(t.decisions).order_by(t.decisions.c.id)
        if version is not None:
            query = query.where(t.decisions.c.version == version)
        if dataset is not None:
            query = query.where(
                t.decisions.c.version.in_(select(t.versions.c.version).where(t.versions.c.dataset == dataset))
            )
        with self.engine.connect() as conn:
            return [DecisionRecord(**row) for row in conn.execute(query).mappings().all()]

    def history(self, alias: str | None = None, dataset: str | None = None) -> list[AliasMove]:
        """Every alias move and reuse, oldest first; with `alias`, the moves of that alias only; with
        `dataset`, that dataset's (and the notes about the whole registry: a rebuild, an upgrade)."""
        with self.engine.connect() as conn:
            return queries.history(conn, alias, dataset)

    # -- drift events ----------------------------------------------------------------------------------------

    def acknowledge_drift(
        self,
        champion: int,
        snapshot_id: str,
        signals: tuple[str, ...],
        actor: str,
        cooldown: timedelta,
        now: datetime | None = None,
    ) -> EmitDecision:
        """Decide whether the monitor emits the drift event (`alerts.should_emit`) and, if so, record it.

        Decision and record are one locked transaction: of two monitors checking the same window at once, one
        emits and the other reads its acknowledgement. The cooldown counts the events of the champion's
        dataset only: drift on one dataset does not hold back another's.
        """
        now = now or datetime.now(UTC)
        with self.locked() as conn:
            dataset = queries.dataset_of_version(conn, champion)
            same = conn.execute(
                select(t.drift_events).where(
                    t.drift_events.c.champion == champion, t.drift_events.c.snapshot_id == snapshot_id
                )
            ).mappings()
            latest = conn.execute(
                select(t.drift_events)
                .where(
                    t.drift_events.c.champion.in_(
                        select(t.versions.c.version).where(t.versions.c.dataset == dataset)
                    )
                )
                .order_by(t.drift_events.c.id.desc())
                .limit(1)
            ).mappings()
            decision = should_emit(
                champion,
                snapshot_id,
                acknowledgement_from_row(same.first()),
                acknowledgement_from_row(latest.first()),
                now,
                cooldown,
            )
            if decision.emit:
                row = {
                    "at": now.isoformat(timespec="milliseconds"),
                    "champion": champion,
                    "snapshot_id": snapshot_id,
                    "signals": json.dumps(list(signals)),
                    "actor": actor,
                }
                conn.execute(insert(t.drift_events).values(**row))
        return decision

    def drift_acknowledgements(self) -> list[Acknowledgement]:
        """Every drift event the monitor emitted, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.drift_events).order_by(t.drift_events.c.id)).mappings().all()
        return [a for a in map(acknowledgement_from_row, rows) if a is not None]

    # -- the write lock --------------------------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[Connection]:
        """One transaction holding the registry's write lock from its first statement (the rebuild writes
        in one too)."""
        with self.engine.begin() as conn:
            conn.execute(update(t.lock).where(t.lock.c.id == 1).values(moves=t.lock.c.moves + 1))
            yield conn

    def _sole_dataset(self) -> str | None:
        with self.engine.connect() as conn:
            return queries.sole_dataset(conn)


def _of(dataset: str | None) -> str:
    return f" of dataset {dataset}" if dataset else ""
