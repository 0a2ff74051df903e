"""The model registry: numbered versions of trained models, the `champion` and `challenger` aliases, an
append-only history of every alias move and version reuse, and the drift events the monitor emitted.

A version points at artifacts that already live in the store (model file, snapshot, run manifest, the split
and per-user metrics it was judged on); the registry holds no weights, only references and metrics, so it
stays small and any SQLAlchemy database can hold it: a SQLite file by default, PostgreSQL for a team.

Every alias move runs in one transaction that first bumps the single row of `registry_lock`. That write takes
the database's write lock (SQLite's reserved lock, PostgreSQL's row lock) before anything is read, so two
processes moving aliases at once are serialised: each reads the champion the other left, and a move made
with `expect=` fails with `StaleAlias` when the champion changed since the caller looked. An alias is one row
keyed by its name, so two champions cannot exist.

A version is one model on one dataset: a run whose model bytes and snapshot equal an existing version's (a
fully cached rerun, a retrain on data that did not change) gets that version back, and the history records
who asked (action `reuse`, no alias moved). The check and the insert share one locked transaction, so two
identical runs at once end with one version. The monitor's drift acknowledgements are kept the same way:
of two monitors at once, one emits (see alerts.py for when an event is due).

Losing the registry must not go unnoticed: `open_registry` refuses a registry that is empty (a 0-byte SQLite
file, dropped tables, a new database) while the artifact store says runs registered models there, and one
that lost some of its tables; `rebuild_from_store` (`<package> models rebuild`) fills an empty one again from
the runs' manifests and status records (runs.py), and `registry_problems` is what `verify` reports.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy import (
    Column,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import inspect as inspect_schema
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, IntegrityError, OperationalError, ProgrammingError

from ..alerts import Acknowledgement, EmitDecision, should_emit
from ..settings import PACKAGE, RegistryConfig, StorageConfig, redact_url
from . import runs
from .store import ArtifactRef, ArtifactStore, canonical_json, local_root, open_store

CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
ALIASES: Final = (CHAMPION, CHALLENGER)
NO_ALIAS: Final = ""  # the alias of a history row that moved none (a reuse)
UNDECIDED: Final = "undecided"  # the action of a version whose judgement failed
REBUILT: Final = "rebuild"  # the action of history rows written by `rebuild_from_store`
_ANY: Final = object()  # `expect` not given: move whatever the alias points to now

_metadata = MetaData()
_lock = Table("registry_lock", _metadata, Column("id", Integer, primary_key=True), Column("moves", Integer))
_versions = Table(
    "model_versions",
    _metadata,
    Column("version", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False, unique=True),
    Column("created_at", String(32), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("model_name", String(64), nullable=False),
    Column("model_id", String(64), nullable=False),
    Column("model_uri", Text, nullable=False),
    Column("snapshot_id", String(64), nullable=False),
    Column("manifest_id", String(64), nullable=False),
    Column("manifest_uri", Text, nullable=False),
    Column("config_fingerprint", String(64), nullable=False),
    Column("metrics", Text, nullable=False),  # JSON
    Column("artifacts", Text, nullable=False),  # JSON: name -> {id, uri, kind, size} of train/test/...
)
_aliases = Table(
    "aliases",
    _metadata,
    Column("alias", String(32), primary_key=True),
    Column("version", Integer, ForeignKey("model_versions.version"), nullable=False),
    Column("moved_at", String(32), nullable=False),
)
_moves = Table(
    "alias_moves",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(32), nullable=False),
    Column("alias", String(32), nullable=False),
    # register | reuse | promote | rollback | clear | undecided | rebuild
    Column("action", String(32), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("decision_id", String(64), nullable=True),  # the stored promotion decision, when there is one
)

_decisions = Table(
    "decisions",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(32), nullable=False),
    Column("version", Integer, ForeignKey("model_versions.version"), nullable=False),
    Column("promoted", Integer, nullable=False),
    Column("reference", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("decision_id", String(64), nullable=False),
)
_drift_events = Table(
    "drift_events",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(32), nullable=False),
    Column("champion", Integer, ForeignKey("model_versions.version"), nullable=False),
    Column("snapshot_id", String(64), nullable=False),
    Column("signals", Text, nullable=False),  # JSON list: the drifted features, and "decay"
    Column("actor", String(200), nullable=False),
    UniqueConstraint("champion", "snapshot_id"),  # one event per champion and data window, whatever happens
)
SQLITE_NAME: Final = "registry.sqlite"


class RegistryError(RuntimeError):
    pass


class VersionNotFound(RegistryError, LookupError):
    pass


class RegistryDamaged(RegistryError):
    """The registry lost versions or tables the store says it held: refused rather than recreated empty."""


class StaleAlias(RegistryError):
    """The alias moved since the caller read it; judge again against the new holder."""


@dataclass(frozen=True)
class ModelVersion:
    version: int
    run_id: str
    created_at: str
    created_by: str
    model_name: str
    model_id: str
    model_uri: str
    snapshot_id: str
    manifest_id: str
    manifest_uri: str
    config_fingerprint: str
    metrics: dict[str, float]
    artifacts: dict[str, dict[str, Any]]
    aliases: tuple[str, ...] = field(default=())

    def artifact(self, name: str) -> dict[str, Any]:
        return self.artifacts[name]


@dataclass(frozen=True)
class AliasMove:
    id: int
    at: str
    alias: str
    action: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    decision_id: str | None


@dataclass(frozen=True)
class DecisionRecord:
    id: int
    at: str
    version: int
    promoted: int
    reference: str
    reason: str
    decision_id: str


def registry_url(cfg: RegistryConfig, storage: StorageConfig) -> str:
    """The configured URL (with the secret password filled in), or a SQLite file at a local store's root."""
    if cfg.url:
        url = make_url(cfg.url)
        if cfg.password is not None and url.password is None:
            url = url.set(password=cfg.password.get_secret_value())
        if cfg.secret_query:
            url = url.update_query_dict({k: v.get_secret_value() for k, v in cfg.secret_query.items()})
        return url.render_as_string(hide_password=False)
    if "://" in storage.uri and not storage.uri.startswith("file://"):
        # A SQLite file cannot live in object storage: keep it in the working directory (a team shares a
        # PostgreSQL registry instead, via registry.url).
        return f"sqlite:///{Path(SQLITE_NAME).resolve()}"
    root = local_root(storage.uri)
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / SQLITE_NAME}"


def open_registry(cfg: RegistryConfig, storage: StorageConfig) -> Registry:
    """The configured registry, refused (`RegistryDamaged`) when it is empty while the store's runs say they
    registered models in it."""
    registry = Registry(registry_url(cfg, storage))
    if registry.is_empty():
        _refuse_if_runs_registered(registry.url, open_store(storage))
    return registry


def registry_problems(url: str, store: ArtifactStore) -> list[str]:
    """What is wrong between the registry at `url` and the store's runs, one line each (for `verify`).

    The registry cannot be opened, or is empty or damaged while runs registered models; a version a run
    registered is missing or holds another model; a version has no promotion decision although its run
    failed or was killed while judging, with nothing in the history saying so.
    """
    try:
        registry = Registry(url)
        if registry.is_empty():
            _refuse_if_runs_registered(url, store)
    except RegistryError as exc:
        return [str(exc)]
    held = {v.version: v for v in registry.versions()}
    statuses = runs.run_statuses(store)
    problems = []
    for run_id, status in sorted(statuses.items()):
        noted = status.get("registry", {})
        if "version" not in noted:
            continue
        found = held.get(noted["version"])
        if found is None:
            problems.append(
                f"run {run_id}: registered version {noted['version']}, which {_where(url)} does not hold"
            )
        elif noted.get("model_id", found.model_id) != found.model_id:
            problems.append(
                f"run {run_id}: registered model {noted['model_id'][:12]} as version {found.version}, but "
                f"{_where(url)} holds model {found.model_id[:12]} there"
            )
    decided = {d.version for d in registry.decisions()}
    # Retired after a failed judgement: the history row names the version (a cleared challenger's as `from`).
    settled = {m.to_version or m.from_version for m in registry.history() if m.action == UNDECIDED}
    for v in held.values():
        if v.version in decided | settled or CHAMPION in v.aliases:
            continue
        state = runs.run_state(statuses.get(v.run_id))
        if state in (runs.FAILED, runs.STOPPED):
            problems.append(
                f"version {v.version}: no promotion decision, and its run {v.run_id} {state} at "
                f"{statuses[v.run_id].get('step', 'promotion')} without saying so in the registry "
                "(the next run of the same model and data judges it)"
            )
    return problems


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "unknown"


class Registry:
    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine = _engine(url)
        except (ArgumentError, ImportError) as exc:  # an unknown dialect, or its driver not installed
            raise RegistryError(f"cannot use the registry {_where(url)}: {exc}") from exc
        try:
            _refuse_lost_tables(self.engine, url)
            _create_schema(self.engine)
        except DatabaseError as exc:  # unreachable, wrong password, not a database: one line, no secret
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise RegistryError(f"cannot open the registry {_where(url)}: {reason}") from exc

    def is_empty(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(_versions.c.version).limit(1)).first() is None

    # -- versions --------------------------------------------------------------------------------------------

    def register(self, manifest: dict[str, Any], actor: str) -> ModelVersion:
        """Add the model of a finished pipeline run (by its manifest), unless a version already holds the same
        model bytes on the same snapshot: then that version is reused (its `run_id` is another run's), and
        the reuse is kept in the history.

        The same run registers once. A new version becomes the `challenger` until a promotion decision moves
        it on; a reuse moves no alias.
        """
        artifacts, run_id = manifest["artifacts"], manifest["run_id"]
        model_id, snapshot_id = artifacts["model"]["id"], artifacts["snapshot"]["id"]
        with self._locked() as conn:
            # Read under the write lock: an identical run registering at the same moment waits here, then
            # finds the version this one added.
            same_run = conn.execute(select(_versions.c.version).where(_versions.c.run_id == run_id)).scalar()
            same_content = conn.execute(
                select(_versions.c.version)
                .where(_versions.c.model_id == model_id, _versions.c.snapshot_id == snapshot_id)
                .order_by(_versions.c.version)
                .limit(1)
            ).scalar()
            if same_run is not None:
                version = same_run  # this run's own version (a retried task)
            elif same_content is not None:
                version = same_content
                reason = f"run {run_id}: same model {model_id[:12]} on snapshot {snapshot_id[:12]}"
                self._log(conn, NO_ALIAS, "reuse", None, version, actor, reason)
            else:
                added = conn.execute(insert(_versions).values(**_version_row(manifest, actor)))
                version = added.inserted_primary_key[0]
                self._move(conn, CHALLENGER, version, "register", actor, f"run {run_id}", None)
        return self.get(version)

    def get(self, key: int | str) -> ModelVersion:
        """A version by number, or `champion`, `challenger` or `latest`."""
        if key in ALIASES:
            found = self.alias(str(key))
            if found is None:
                raise VersionNotFound(f"no model holds the {key} alias yet")
            return found
        if key == "latest":
            versions = self.versions()
            if not versions:
                raise VersionNotFound("the registry has no model versions yet")
            return versions[-1]
        try:
            number = int(key)
        except ValueError:
            raise VersionNotFound(f"not a version number or alias: {key!r}") from None
        with self.engine.connect() as conn:
            row = conn.execute(select(_versions).where(_versions.c.version == number)).mappings().first()
            if row is None:
                raise VersionNotFound(f"no model version {number}")
            return _version(row, self._aliases_of(conn, number))

    def versions(self) -> list[ModelVersion]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(_versions).order_by(_versions.c.version)).mappings().all()
            held = self._all_aliases(conn)
        return [_version(r, tuple(a for a, v in held.items() if v == r["version"])) for r in rows]

    def alias(self, name: str) -> ModelVersion | None:
        with self.engine.connect() as conn:
            version = self._all_aliases(conn).get(name)
        return None if version is None else self.get(version)

    # -- alias moves -----------------------------------------------------------------------------------------

    def promote(
        self,
        version: int,
        actor: str,
        reason: str,
        expect: int | None | object = _ANY,
        decision_id: str | None = None,
    ) -> AliasMove:
        """Make `version` the champion; with `expect`, only if the champion is still that version (or None).

        A promoted version stops being the challenger.
        """
        with self._locked() as conn:
            self._require(conn, version)
            current = self._all_aliases(conn).get(CHAMPION)
            if expect is not _ANY and current != expect:
                raise StaleAlias(f"the champion is now version {current}, not {expect}")
            if current == version:
                raise RegistryError(f"version {version} is already the champion")
            move = self._move(conn, CHAMPION, version, "promote", actor, reason, decision_id)
            if self._all_aliases(conn).get(CHALLENGER) == version:
                self._move(conn, CHALLENGER, None, "clear", actor, f"promoted to {CHAMPION}", decision_id)
            return move

    def rollback(self, actor: str, reason: str) -> AliasMove:
        """Give the champion alias back to the previous champion (repeat to go further back)."""
        with self._locked() as conn:
            lineup = _champion_lineup(self._history(conn, CHAMPION))
            if len(lineup) < 2:
                raise RegistryError("there is no previous champion to roll back to")
            return self._move(conn, CHAMPION, lineup[-2], "rollback", actor, reason, None)

    def retire_undecided(self, version: int, actor: str, reason: str) -> AliasMove:
        """A version whose judgement failed: it stops being the challenger and the history says why (action
        `undecided`). It stays registered, so a later run of the same model and data reuses and judges it."""
        with self._locked() as conn:
            self._require(conn, version)
            if self._all_aliases(conn).get(CHALLENGER) == version:
                return self._move(conn, CHALLENGER, None, UNDECIDED, actor, reason, None)
            return self._log(conn, NO_ALIAS, UNDECIDED, None, version, actor, reason)

    def record_decision(
        self, version: int, promoted: bool, reference: str, reason: str, decision_id: str
    ) -> DecisionRecord:
        """Keep a promotion decision (stored in full as an artifact) with the version it judged."""
        row = {
            "at": _now(),
            "version": version,
            "promoted": int(promoted),
            "reference": reference,
            "reason": reason,
            "decision_id": decision_id,
        }
        with self.engine.begin() as conn:
            record_id = conn.execute(insert(_decisions).values(**row)).inserted_primary_key[0]
        return DecisionRecord(id=record_id, **row)

    def decisions(self, version: int | None = None) -> list[DecisionRecord]:
        query = select(_decisions).order_by(_decisions.c.id)
        if version is not None:
            query = query.where(_decisions.c.version == version)
        with self.engine.connect() as conn:
            return [DecisionRecord(**row) for row in conn.execute(query).mappings().all()]

    def history(self, alias: str | None = None) -> list[AliasMove]:
        """Every alias move and reuse, oldest first; with `alias`, the moves of that alias only."""
        with self.engine.connect() as conn:
            return self._history(conn, alias)

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
        emits and the other reads its acknowledgement.
        """
        now = now or datetime.now(UTC)
        with self._locked() as conn:
            same = conn.execute(
                select(_drift_events).where(
                    _drift_events.c.champion == champion, _drift_events.c.snapshot_id == snapshot_id
                )
            ).mappings()
            latest = conn.execute(
                select(_drift_events).order_by(_drift_events.c.id.desc()).limit(1)
            ).mappings()
            decision = should_emit(
                champion,
                snapshot_id,
                _acknowledgement(same.first()),
                _acknowledgement(latest.first()),
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
                conn.execute(insert(_drift_events).values(**row))
        return decision

    def drift_acknowledgements(self) -> list[Acknowledgement]:
        """Every drift event the monitor emitted, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_drift_events).order_by(_drift_events.c.id)).mappings().all()
        return [a for a in map(_acknowledgement, rows) if a is not None]

    # -- internals -------------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[Connection]:
        """One transaction holding the registry's write lock from its first statement."""
        with self.engine.begin() as conn:
            conn.execute(update(_lock).where(_lock.c.id == 1).values(moves=_lock.c.moves + 1))
            yield conn

    def _move(
        self,
        conn: Connection,
        alias: str,
        version: int | None,
        action: str,
        actor: str,
        reason: str,
        decision_id: str | None,
    ) -> AliasMove:
        previous = self._all_aliases(conn).get(alias)
        if version is None:
            conn.execute(_aliases.delete().where(_aliases.c.alias == alias))
        elif previous is None:
            conn.execute(insert(_aliases).values(alias=alias, version=version, moved_at=_now()))
        else:
            conn.execute(
                update(_aliases).where(_aliases.c.alias == alias).values(version=version, moved_at=_now())
            )
        return self._log(conn, alias, action, previous, version, actor, reason, decision_id)

    def _log(
        self,
        conn: Connection,
        alias: str,
        action: str,
        from_version: int | None,
        to_version: int | None,
        actor: str,
        reason: str,
        decision_id: str | None = None,
    ) -> AliasMove:
        """Append a row to the history (every alias move, and reuses, which move none)."""
        row = {
            "at": _now(),
            "alias": alias,
            "action": action,
            "from_version": from_version,
            "to_version": to_version,
            "actor": actor,
            "reason": reason,
            "decision_id": decision_id,
        }
        move_id = conn.execute(insert(_moves).values(**row)).inserted_primary_key[0]
        return AliasMove(id=move_id, **row)

    def _require(self, conn: Connection, version: int) -> None:
        if conn.execute(select(_versions.c.version).where(_versions.c.version == version)).first() is None:
            raise VersionNotFound(f"no model version {version}")

    def _all_aliases(self, conn: Connection) -> dict[str, int]:
        return {a: v for a, v in conn.execute(select(_aliases.c.alias, _aliases.c.version)).all()}

    def _aliases_of(self, conn: Connection, version: int) -> tuple[str, ...]:
        return tuple(sorted(a for a, v in self._all_aliases(conn).items() if v == version))

    def _history(self, conn: Connection, alias: str | None) -> list[AliasMove]:
        query = select(_moves).order_by(_moves.c.id)
        if alias is not None:
            query = query.where(_moves.c.alias == alias)
        return [AliasMove(**row) for row in conn.execute(query).mappings().all()]


@dataclass(frozen=True)
class Rebuilt:
    """What `rebuild_from_store` restored, and the runs it could not use."""

    versions: int
    decisions: int
    champion: int | None
    challenger: int | None
    unrecorded: list[str]  # runs with a manifest but no registration record (older, or promotion off)


def rebuild_from_store(url: str, store: ArtifactStore, actor: str) -> Rebuilt:
    """Fill an empty (or damaged: tables lost) registry from the store's runs, oldest first.

    Each run's status names the version it registered or reused, the decision stored about it and whether it
    was promoted: versions come back with their numbers and metrics, decisions from their stored records, and
    the aliases as those decisions moved them. Moves made by hand (`models promote`, `rollback`), the times
    of the original moves and the drift acknowledgements were never in the store: the history says it was
    rebuilt, each row names the run it came from. Refuses a registry that is whole and holds versions.
    """
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            present = set(inspect_schema(conn).get_table_names())
            whole = {t.name for t in _metadata.sorted_tables} <= present
            if whole and (count := len(conn.execute(select(_versions.c.version)).all())):
                raise RegistryError(
                    f"{_where(url)} holds {count} model versions: a rebuild only fills an empty or damaged "
                    "registry (move this one aside first)"
                )
        # Leftovers of a damaged registry (rows about versions that are gone) cannot be trusted: start anew.
        _metadata.drop_all(engine, tables=[t for t in _metadata.sorted_tables if t.name in present])
    except DatabaseError as exc:
        raise RegistryError(f"cannot open the registry {_where(url)}: {exc.orig or exc}") from exc
    finally:
        engine.dispose()
    registry = Registry(url)
    manifests = runs.list_runs(store)
    source = f"rebuilt from the store {store.uri_of('')}"
    unrecorded, decisions = [], 0
    with registry._locked() as conn:
        registry._log(conn, NO_ALIAS, REBUILT, None, None, actor, f"{source}: {len(manifests)} runs")
        for manifest in manifests:
            noted = (manifest["status"] or {}).get("registry", {})
            if "version" not in noted:
                unrecorded.append(manifest["run_id"])
                continue
            decisions += _replay(registry, conn, store, manifest, noted, actor)
        if conn.dialect.name == "postgresql":  # explicit numbers do not advance the serial's sequence
            conn.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence('model_versions', 'version'), "
                    "(SELECT COALESCE(MAX(version), 1) FROM model_versions))"
                )
            )
        held = registry._all_aliases(conn)
        registry._log(
            conn,
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
        champion=held.get(CHAMPION),
        challenger=held.get(CHALLENGER),
        unrecorded=unrecorded,
    )


def _replay(
    registry: Registry,
    conn: Connection,
    store: ArtifactStore,
    manifest: dict[str, Any],
    noted: dict[str, Any],
    actor: str,
) -> int:
    """Put back what one run did to the registry (version, decision, promotion); returns decisions added."""
    run_id, version, at = manifest["run_id"], int(noted["version"]), manifest["finished_at"]
    known = conn.execute(select(_versions.c.version).where(_versions.c.version == version)).first()
    if known is None:
        stored = {k: v for k, v in manifest.items() if k != "status"}
        outputs = {
            "manifest_id": hashlib.sha256(canonical_json(stored)).hexdigest(),
            "manifest": f"runs/{run_id}/{runs.MANIFEST_NAME}",
        }
        row = _version_row({**stored, "outputs": outputs}, f"run {run_id}")
        conn.execute(insert(_versions).values(**{**row, "version": version, "created_at": at}))
        registry._move(conn, CHALLENGER, version, REBUILT, actor, f"run {run_id} registered it ({at})", None)
    else:
        registry._log(conn, NO_ALIAS, "reuse", None, version, actor, f"run {run_id} reused it ({at})")
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
        conn.execute(insert(_decisions).values(**row))
        added = 1
    if noted.get("promoted"):
        held = registry._all_aliases(conn)
        if held.get(CHAMPION) != version:
            reason = f"run {run_id} promoted it ({at})"
            decision_id = noted.get("decision", {}).get("id")
            registry._move(conn, CHAMPION, version, REBUILT, actor, reason, decision_id)
        if held.get(CHALLENGER) == version:
            registry._move(conn, CHALLENGER, None, REBUILT, actor, f"promoted to {CHAMPION}", None)
    return added


def _refuse_if_runs_registered(url: str, store: ArtifactStore) -> None:
    registered = {
        run_id: status["registry"]["version"]
        for run_id, status in runs.run_statuses(store).items()
        if "version" in status.get("registry", {})
    }
    if registered:
        versions = sorted(set(registered.values()))
        raise RegistryDamaged(
            f"the registry {_where(url)} is empty, but the store {store.uri_of('')} says {len(registered)} "
            f"runs registered models in it (versions {versions[0]}-{versions[-1]}): it was lost or replaced. "
            f"Rebuild it from the runs' manifests with `{PACKAGE} models rebuild`"
        )


def _refuse_lost_tables(engine: Engine, url: str) -> None:
    """Refuse a registry some of whose tables are gone while others hold rows: recreating the missing ones
    empty would silently drop versions, history or decisions. (All tables missing, or all empty, is a new
    registry, possibly being created by another process right now: `open_registry` checks it against the
    store.)"""
    ours = {t.name for t in _metadata.sorted_tables} - {_lock.name}
    with engine.connect() as conn:
        present = set(inspect_schema(conn).get_table_names()) & ours
        missing = sorted(ours - present)
        if not missing or not present:
            return
        filled = [t for t in sorted(present) if conn.execute(select(_metadata.tables[t]).limit(1)).first()]
    if filled:
        raise RegistryDamaged(
            f"the registry {_where(url)} lost its tables {', '.join(missing)} (still holding rows in "
            f"{', '.join(filled)}): recreating them empty would lose its versions or history. Rebuild it "
            f"from the runs' manifests with `{PACKAGE} models rebuild`"
        )


def _where(url: str) -> str:
    """The registry as a person finds it: the SQLite file's path, or the URL without secrets."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database:
        return f"file {parsed.database}"
    return redact_url(url)


def _champion_lineup(moves: list[AliasMove]) -> list[int]:
    """The stack of champions: a promotion pushes its version, a rollback pops back to the one before."""
    lineup: list[int] = []
    for move in moves:
        if move.action == "rollback":
            lineup.pop()
        elif move.to_version is not None:
            lineup.append(move.to_version)
    return lineup


def _version_row(manifest: dict[str, Any], actor: str) -> dict[str, Any]:
    artifacts = manifest["artifacts"]
    return {
        "run_id": manifest["run_id"],
        "created_at": _now(),
        "created_by": actor,
        "model_name": manifest["model"],
        "model_id": artifacts["model"]["id"],
        "model_uri": artifacts["model"]["uri"],
        "snapshot_id": artifacts["snapshot"]["id"],
        "manifest_id": manifest["outputs"]["manifest_id"],
        "manifest_uri": manifest["outputs"]["manifest"],
        "config_fingerprint": manifest["config_fingerprint"],
        "metrics": json.dumps(manifest["metrics"], sort_keys=True),
        "artifacts": json.dumps(
            {k: artifacts[k] for k in ("model", "snapshot", "train", "test", "metrics_per_user")},
            sort_keys=True,
        ),
    }


def _acknowledgement(row: Any) -> Acknowledgement | None:
    if row is None:
        return None
    return Acknowledgement(
        at=datetime.fromisoformat(row["at"]),
        champion=row["champion"],
        snapshot_id=row["snapshot_id"],
        signals=tuple(json.loads(row["signals"])),
        actor=row["actor"],
    )


def _version(row: Any, aliases: tuple[str, ...]) -> ModelVersion:
    values = dict(row)
    values["metrics"] = json.loads(values["metrics"])
    values["artifacts"] = json.loads(values["artifacts"])
    return ModelVersion(**values, aliases=aliases)


def _engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    # A writer waits up to a minute for another's lock instead of failing at once; WAL lets readers read
    # while one process writes.
    engine = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def _create_schema(engine: Engine) -> None:
    """Tables and the lock row, idempotent when several processes open a new registry at once."""
    for _ in range(5):
        try:
            _metadata.create_all(engine, checkfirst=True)
            with engine.begin() as conn:
                if conn.execute(select(_lock.c.id)).first() is None:
                    conn.execute(insert(_lock).values(id=1, moves=0))
            return
        # Another process created a table or the lock row in between (PostgreSQL reports a table created
        # under it as ProgrammingError, SQLite as OperationalError).
        except (IntegrityError, OperationalError, ProgrammingError):
            continue
    _metadata.create_all(engine, checkfirst=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
