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
"""

from __future__ import annotations

import getpass
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
    update,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from ..alerts import Acknowledgement, EmitDecision, should_emit
from ..settings import RegistryConfig, StorageConfig

CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
ALIASES: Final = (CHAMPION, CHALLENGER)
NO_ALIAS: Final = ""  # the alias of a history row that moved none (a reuse)
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
    Column("action", String(32), nullable=False),  # register | reuse | promote | rollback | clear
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
        return url.render_as_string(hide_password=False)
    if "://" in storage.uri and not storage.uri.startswith("file://"):
        # A SQLite file cannot live in object storage: keep it in the working directory (a team shares a
        # PostgreSQL registry instead, via registry.url).
        return f"sqlite:///{Path(SQLITE_NAME).resolve()}"
    root = Path(storage.uri.removeprefix("file://")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / SQLITE_NAME}"


def open_registry(cfg: RegistryConfig, storage: StorageConfig) -> Registry:
    return Registry(registry_url(cfg, storage))


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "unknown"


class Registry:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)
        _create_schema(self.engine)

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
