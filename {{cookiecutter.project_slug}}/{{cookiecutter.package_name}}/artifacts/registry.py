"""The model registry: numbered versions of trained models, the `champion` and `challenger` aliases, an
append-only history of every alias move and version reuse, and the drift events the monitor emitted.

Champions are per dataset. Every version carries the name of the dataset it was trained on
(`data.name`, else derived from the data settings: `synthetic`, `ml-100k`, ...), and the `champion` and
`challenger` aliases, their history and the promotion decisions are kept per dataset: a model is judged
against, and may replace, only the champion of its own dataset. Version numbers are global.

A version points at artifacts that already live in the store (model file, snapshot, run manifest, the split
and per-user metrics it was judged on); the registry holds no weights, only references and metrics, so it
stays small and any SQLAlchemy database can hold it: a SQLite file by default, PostgreSQL for a team.

Every alias move runs in one transaction that first bumps the single row of `registry_lock`. That write takes
the database's write lock (SQLite's reserved lock, PostgreSQL's row lock) before anything is read, so two
processes moving aliases at once are serialised: each reads the champion the other left, and a move made
with `expect=` fails with `StaleAlias` when the champion changed since the caller looked. An alias is one row
keyed by its dataset and name, so two champions of one dataset cannot exist.

A version is one model on one dataset: a run whose model bytes and snapshot equal an existing version's (a
fully cached rerun, a retrain on data that did not change) gets that version back, and the history records
who asked (action `reuse`, no alias moved). The check and the insert share one locked transaction, so two
identical runs at once end with one version. The monitor's drift acknowledgements are kept the same way:
of two monitors at once, one emits (see alerts.py for when an event is due).

Losing the registry must not go unnoticed: `open_registry` refuses a registry that is empty (a 0-byte SQLite
file, dropped tables, a new database) while the artifact store says runs registered models there, and one
that lost some of its tables; `rebuild_from_store` (`<package> models rebuild`) fills an empty one again from
the runs' manifests and status records (runs.py), and `registry_problems` is what `verify` reports.

A registry made before datasets had champions of their own is upgraded when it is opened, once, under the
write lock: its versions get their dataset from their runs' manifests in the store, its aliases and history
the dataset of the version they name (`_upgrade_schema`).

Once promoted, a version is served by a model refit on its whole snapshot (serving.py): the version keeps
that model's reference in `serving`, beside the evaluated model every judgement keeps using.
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
from sqlalchemy.sql import func, literal_column

from ..alerts import Acknowledgement, EmitDecision, should_emit
from ..settings import PACKAGE, DataConfig, RegistryConfig, StorageConfig, redact_url
from . import runs
from .store import ArtifactRef, ArtifactStore, canonical_json, local_root, open_store

CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
ALIASES: Final = (CHAMPION, CHALLENGER)
NO_ALIAS: Final = ""  # the alias of a history row that moved none (a reuse)
UNDECIDED: Final = "undecided"  # the action of a version whose judgement failed
REBUILT: Final = "rebuild"  # the action of history rows written by `rebuild_from_store`
UPGRADED: Final = "upgrade"  # the action of the history row written when an older registry was upgraded
UNKNOWN_DATASET: Final = "unknown"  # an upgraded version whose run's manifest is no longer in the store
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
    Column("dataset", String(64), nullable=False, server_default=""),
    Column("serving", Text, nullable=True),  # JSON: the model served once promoted (see serving.py)
)
_aliases = Table(
    "aliases",
    _metadata,
    Column("dataset", String(64), primary_key=True),
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
    Column("dataset", String(64), nullable=False, server_default=""),  # "": a note about the whole registry
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
    dataset: str
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
    serving: dict[str, Any] | None = None  # the refit served once promoted: {model: {id, uri, ...}, ...}
    aliases: tuple[str, ...] = field(default=())

    def artifact(self, name: str) -> dict[str, Any]:
        return self.artifacts[name]


@dataclass(frozen=True)
class AliasMove:
    id: int
    at: str
    dataset: str
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
    store = open_store(storage)
    registry = Registry(registry_url(cfg, storage), store)
    if registry.is_empty():
        _refuse_if_runs_registered(registry.url, store)
    return registry


def registry_problems(url: str, store: ArtifactStore) -> list[str]:
    """What is wrong between the registry at `url` and the store's runs, one line each (for `verify`).

    The registry cannot be opened, or is empty or damaged while runs registered models; a version a run
    registered is missing or holds another model; a version has no promotion decision although its run
    failed or was killed while judging, with nothing in the history saying so.
    """
    try:
        registry = Registry(url, store)
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
    def __init__(self, url: str, store: ArtifactStore | None = None) -> None:
        """The registry at `url`; `store` (the artifact store its runs wrote to) is needed once, to upgrade a
        registry made before datasets had champions of their own."""
        self.url = url
        try:
            self.engine = _engine(url)
        except (ArgumentError, ImportError) as exc:  # an unknown dialect, or its driver not installed
            raise RegistryError(f"cannot use the registry {_where(url)}: {exc}") from exc
        try:
            _refuse_lost_tables(self.engine, url)
            _create_schema(self.engine)
            _upgrade_schema(self.engine, url, store)
        except DatabaseError as exc:  # unreachable, wrong password, not a database: one line, no secret
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise RegistryError(f"cannot open the registry {_where(url)}: {reason}") from exc

    def is_empty(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(_versions.c.version).limit(1)).first() is None

    def datasets(self) -> list[str]:
        """The names of the datasets the registry holds versions of, sorted."""
        with self.engine.connect() as conn:
            return _datasets(conn)

    # -- versions --------------------------------------------------------------------------------------------

    def register(self, manifest: dict[str, Any], actor: str) -> ModelVersion:
        """Add the model of a finished pipeline run (by its manifest), unless a version already holds the same
        model bytes on the same snapshot of the same dataset: then that version is reused (its `run_id` is
        another run's), and the reuse is kept in the history.

        The same run registers once. A new version becomes its dataset's `challenger` until a promotion
        decision moves it on; a reuse moves no alias.
        """
        artifacts, run_id, dataset = manifest["artifacts"], manifest["run_id"], dataset_of(manifest)
        model_id, snapshot_id = artifacts["model"]["id"], artifacts["snapshot"]["id"]
        with self._locked() as conn:
            # Read under the write lock: an identical run registering at the same moment waits here, then
            # finds the version this one added.
            same_run = conn.execute(select(_versions.c.version).where(_versions.c.run_id == run_id)).scalar()
            same_content = conn.execute(
                select(_versions.c.version)
                .where(
                    _versions.c.model_id == model_id,
                    _versions.c.snapshot_id == snapshot_id,
                    _versions.c.dataset == dataset,
                )
                .order_by(_versions.c.version)
                .limit(1)
            ).scalar()
            if same_run is not None:
                version = same_run  # this run's own version (a retried task)
            elif same_content is not None:
                version = same_content
                reason = f"run {run_id}: same model {model_id[:12]} on snapshot {snapshot_id[:12]}"
                self._log(conn, dataset, NO_ALIAS, "reuse", None, version, actor, reason)
            else:
                added = conn.execute(insert(_versions).values(**_version_row(manifest, actor)))
                version = added.inserted_primary_key[0]
                self._move(conn, dataset, CHALLENGER, version, "register", actor, f"run {run_id}", None)
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
            row = conn.execute(select(_versions).where(_versions.c.version == number)).mappings().first()
            if row is None:
                raise VersionNotFound(f"no model version {number}")
            return _version(row, self._aliases_of(conn, number))

    def versions(self, dataset: str | None = None) -> list[ModelVersion]:
        """Every version, oldest first; with `dataset`, that dataset's only."""
        query = select(_versions).order_by(_versions.c.version)
        if dataset is not None:
            query = query.where(_versions.c.dataset == dataset)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            held = conn.execute(select(_aliases.c.alias, _aliases.c.version)).all()
        return [_version(r, tuple(sorted(a for a, v in held if v == r["version"]))) for r in rows]

    def alias(self, name: str, dataset: str | None = None) -> ModelVersion | None:
        """The version holding alias `name` for `dataset` (None: the one dataset the registry holds)."""
        with self.engine.connect() as conn:
            dataset = dataset or _sole_dataset(conn)
            version = None if dataset is None else self._aliases_in(conn, dataset).get(name)
        return None if version is None else self.get(version)

    def set_serving(self, version: int, serving: dict[str, Any]) -> ModelVersion:
        """Record the model that serves `version` (refit on its whole snapshot, see serving.py)."""
        with self.engine.begin() as conn:
            self._require(conn, version)
            conn.execute(
                update(_versions)
                .where(_versions.c.version == version)
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
        with self._locked() as conn:
            dataset = self._dataset_of(conn, version)
            current = self._aliases_in(conn, dataset).get(CHAMPION)
            if expect is not _ANY and current != expect:
                raise StaleAlias(f"the champion of {dataset} is now version {current}, not {expect}")
            if current == version:
                raise RegistryError(f"version {version} is already the champion of {dataset}")
            move = self._move(conn, dataset, CHAMPION, version, "promote", actor, reason, decision_id)
            if self._aliases_in(conn, dataset).get(CHALLENGER) == version:
                cleared = f"promoted to {CHAMPION}"
                self._move(conn, dataset, CHALLENGER, None, "clear", actor, cleared, decision_id)
            return move

    def rollback(self, actor: str, reason: str, dataset: str | None = None) -> AliasMove:
        """Give the champion alias of `dataset` back to its previous champion (repeat to go further back)."""
        with self._locked() as conn:
            dataset = dataset or _sole_dataset(conn) or ""
            lineup = _champion_lineup(self._history(conn, CHAMPION, dataset))
            if len(lineup) < 2:
                raise RegistryError(f"there is no previous champion{_of(dataset)} to roll back to")
            return self._move(conn, dataset, CHAMPION, lineup[-2], "rollback", actor, reason, None)

    def retire_undecided(self, version: int, actor: str, reason: str) -> AliasMove:
        """A version whose judgement failed: it stops being the challenger and the history says why (action
        `undecided`). It stays registered, so a later run of the same model and data reuses and judges it."""
        with self._locked() as conn:
            dataset = self._dataset_of(conn, version)
            if self._aliases_in(conn, dataset).get(CHALLENGER) == version:
                return self._move(conn, dataset, CHALLENGER, None, UNDECIDED, actor, reason, None)
            return self._log(conn, dataset, NO_ALIAS, UNDECIDED, None, version, actor, reason)

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

    def decisions(self, version: int | None = None, dataset: str | None = None) -> list[DecisionRecord]:
        """The promotion decisions, oldest first: about `version`, or about the versions of `dataset`."""
        query = select(_decisions).order_by(_decisions.c.id)
        if version is not None:
            query = query.where(_decisions.c.version == version)
        if dataset is not None:
            query = query.where(
                _decisions.c.version.in_(select(_versions.c.version).where(_versions.c.dataset == dataset))
            )
        with self.engine.connect() as conn:
            return [DecisionRecord(**row) for row in conn.execute(query).mappings().all()]

    def history(self, alias: str | None = None, dataset: str | None = None) -> list[AliasMove]:
        """Every alias move and reuse, oldest first; with `alias`, the moves of that alias only; with
        `dataset`, that dataset's (and the notes about the whole registry: a rebuild, an upgrade)."""
        with self.engine.connect() as conn:
            return self._history(conn, alias, dataset)

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
        with self._locked() as conn:
            dataset = self._dataset_of(conn, champion)
            same = conn.execute(
                select(_drift_events).where(
                    _drift_events.c.champion == champion, _drift_events.c.snapshot_id == snapshot_id
                )
            ).mappings()
            latest = conn.execute(
                select(_drift_events)
                .where(
                    _drift_events.c.champion.in_(
                        select(_versions.c.version).where(_versions.c.dataset == dataset)
                    )
                )
                .order_by(_drift_events.c.id.desc())
                .limit(1)
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

    def _sole_dataset(self) -> str | None:
        with self.engine.connect() as conn:
            return _sole_dataset(conn)

    def _move(
        self,
        conn: Connection,
        dataset: str,
        alias: str,
        version: int | None,
        action: str,
        actor: str,
        reason: str,
        decision_id: str | None,
    ) -> AliasMove:
        previous = self._aliases_in(conn, dataset).get(alias)
        held = (_aliases.c.dataset == dataset) & (_aliases.c.alias == alias)
        if version is None:
            conn.execute(_aliases.delete().where(held))
        elif previous is None:
            row = {"dataset": dataset, "alias": alias, "version": version, "moved_at": _now()}
            conn.execute(insert(_aliases).values(**row))
        else:
            conn.execute(update(_aliases).where(held).values(version=version, moved_at=_now()))
        return self._log(conn, dataset, alias, action, previous, version, actor, reason, decision_id)

    def _log(
        self,
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
        row = {
            "at": _now(),
            "dataset": dataset,
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
        self._dataset_of(conn, version)

    def _dataset_of(self, conn: Connection, version: int) -> str:
        found = conn.execute(select(_versions.c.dataset).where(_versions.c.version == version)).first()
        if found is None:
            raise VersionNotFound(f"no model version {version}")
        return str(found[0])

    def _aliases_in(self, conn: Connection, dataset: str) -> dict[str, int]:
        rows = conn.execute(select(_aliases.c.alias, _aliases.c.version).where(_aliases.c.dataset == dataset))
        return {a: v for a, v in rows.all()}

    def _aliases_of(self, conn: Connection, version: int) -> tuple[str, ...]:
        rows = conn.execute(select(_aliases.c.alias).where(_aliases.c.version == version)).scalars()
        return tuple(sorted(rows.all()))

    def _history(self, conn: Connection, alias: str | None, dataset: str | None = None) -> list[AliasMove]:
        query = select(_moves).order_by(_moves.c.id)
        if alias is not None:
            query = query.where(_moves.c.alias == alias)
        if dataset is not None:
            query = query.where(_moves.c.dataset.in_([dataset, ""]))
        return [AliasMove(**row) for row in conn.execute(query).mappings().all()]


def dataset_of(manifest: dict[str, Any]) -> str:
    """The dataset a run trained on: the name its manifest records, or (a manifest written before names
    were recorded) the name its data settings give."""
    named = (manifest.get("dataset") or {}).get("name")
    if named:
        return str(named)
    data = (manifest.get("config") or {}).get("data")
    if not isinstance(data, dict):
        raise RegistryError(f"the manifest of run {manifest.get('run_id')} names no dataset")
    try:
        return DataConfig.model_validate(data).dataset_name()
    except ValueError:  # settings of an older release that no longer validate: read what they hold
        known = {k: v for k, v in data.items() if k in DataConfig.model_fields}
        return DataConfig.model_construct(**known).dataset_name()


def _datasets(conn: Connection) -> list[str]:
    rows = conn.execute(select(_versions.c.dataset).distinct().order_by(_versions.c.dataset))
    return [str(d) for d in rows.scalars().all()]


def _sole_dataset(conn: Connection) -> str | None:
    """The dataset when the registry holds versions of one only (None when it holds none). Callers that
    name no dataset are refused once there are several: which champion they meant cannot be guessed."""
    held = _datasets(conn)
    if len(held) > 1:
        raise RegistryError(
            f"the registry holds models of {len(held)} datasets ({', '.join(held)}): name one "
            "(data.name, or the data settings it was trained with)"
        )
    return held[0] if held else None


def _of(dataset: str | None) -> str:
    return f" of dataset {dataset}" if dataset else ""


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
    moved them. Moves made by hand (`models promote`, `rollback`), the times
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
        registry._log(conn, "", NO_ALIAS, REBUILT, None, None, actor, f"{source}: {len(manifests)} runs")
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
        held = conn.execute(select(_aliases.c.dataset, _aliases.c.alias, _aliases.c.version)).all()
        registry._log(
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
    registry: Registry,
    conn: Connection,
    store: ArtifactStore,
    manifest: dict[str, Any],
    noted: dict[str, Any],
    actor: str,
) -> int:
    """Put back what one run did to the registry (version, decision, promotion, serving model); returns the
    decisions added."""
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
        dataset = row["dataset"]
        reason = f"run {run_id} registered it ({at})"
        registry._move(conn, dataset, CHALLENGER, version, REBUILT, actor, reason, None)
    else:
        dataset = registry._dataset_of(conn, version)
        reason = f"run {run_id} reused it ({at})"
        registry._log(conn, dataset, NO_ALIAS, "reuse", None, version, actor, reason)
    if "serving" in noted:
        served = json.dumps(noted["serving"], sort_keys=True)
        conn.execute(update(_versions).where(_versions.c.version == version).values(serving=served))
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
        held = registry._aliases_in(conn, dataset)
        if held.get(CHAMPION) != version:
            reason = f"run {run_id} promoted it ({at})"
            decision_id = noted.get("decision", {}).get("id")
            registry._move(conn, dataset, CHAMPION, version, REBUILT, actor, reason, decision_id)
        if held.get(CHALLENGER) == version:
            cleared = f"promoted to {CHAMPION}"
            registry._move(conn, dataset, CHALLENGER, None, REBUILT, actor, cleared, None)
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
        # Without naming columns: an older registry's tables lack some of today's.
        filled = [
            t
            for t in sorted(present)
            if conn.execute(select(literal_column("1")).select_from(_metadata.tables[t]).limit(1)).first()
        ]
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
        "dataset": dataset_of(manifest),
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
    values["serving"] = json.loads(values["serving"]) if values["serving"] else None
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


def _upgrade_schema(engine: Engine, url: str, store: ArtifactStore | None) -> None:
    """Upgrade a registry made before datasets had champions of their own, in one transaction under the write
    lock (a second process opening it at once waits, then finds it done).

    Its versions get the dataset their run's manifest names (or its data settings give), read from the store;
    a version whose manifest is gone gets `unknown`. Its aliases and history rows get the dataset of the
    version they name, so the champion stays the champion, now of its dataset.
    """
    with engine.connect() as conn:
        if "dataset" in _columns(conn, _versions.name):
            return
    if store is None:
        raise RegistryError(
            f"the registry {_where(url)} predates per-dataset champions: open it with its artifact store "
            "(any command does) to upgrade it"
        )
    with engine.begin() as conn:
        conn.execute(update(_lock).where(_lock.c.id == 1).values(moves=_lock.c.moves + 1))
        if "dataset" in _columns(conn, _versions.name):
            return  # another process upgraded it while this one waited for the lock
        for statement in (
            "ALTER TABLE model_versions ADD COLUMN dataset VARCHAR(64) DEFAULT '' NOT NULL",
            "ALTER TABLE model_versions ADD COLUMN serving TEXT",
            "ALTER TABLE alias_moves ADD COLUMN dataset VARCHAR(64) DEFAULT '' NOT NULL",
        ):
            conn.execute(text(statement))
        rows = conn.execute(select(_versions.c.version, _versions.c.run_id, _versions.c.manifest_uri)).all()
        named = {version: _stored_dataset(store, run_id, uri) for version, run_id, uri in rows}
        for version, dataset in named.items():
            conn.execute(update(_versions).where(_versions.c.version == version).values(dataset=dataset))
        # The alias table's key gains the dataset: recreated, its rows carried over.
        held = conn.execute(text("SELECT alias, version, moved_at FROM aliases")).all()
        conn.execute(text("DROP TABLE aliases"))
        _aliases.create(conn)
        for alias, version, moved_at in held:
            row = {"dataset": named[version], "alias": alias, "version": version, "moved_at": moved_at}
            conn.execute(insert(_aliases).values(**row))
        named_version = func.coalesce(_moves.c.to_version, _moves.c.from_version)
        of_version = select(_versions.c.dataset).where(_versions.c.version == named_version)
        conn.execute(
            update(_moves)
            .where(named_version.is_not(None))
            .values(dataset=func.coalesce(of_version.scalar_subquery(), ""))
        )
        counts = {d: list(named.values()).count(d) for d in sorted(set(named.values()))}
        note = ", ".join(f"{d}: {n} versions" for d, n in counts.items()) or "no versions"
        conn.execute(
            insert(_moves).values(
                at=_now(),
                dataset="",
                alias=NO_ALIAS,
                action=UPGRADED,
                actor=default_actor(),
                reason=f"champions kept per dataset; datasets from the runs' manifests ({note})",
            )
        )


def _columns(conn: Connection, table: str) -> set[str]:
    return {c["name"] for c in inspect_schema(conn).get_columns(table)}


def _stored_dataset(store: ArtifactStore, run_id: str, manifest_uri: str) -> str:
    """The dataset of the run that registered a version, from its manifest in the store."""
    for where in (f"runs/{run_id}/{runs.MANIFEST_NAME}", manifest_uri):
        try:
            return dataset_of(json.loads(store.read_text(store.relative(where))))
        except (OSError, ValueError, RegistryError):
            continue
    return UNKNOWN_DATASET


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
