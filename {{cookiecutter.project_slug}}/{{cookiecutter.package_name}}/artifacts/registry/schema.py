"""The registry's database and its schema: the engine, and bringing a database to the newest migration
when the registry is opened.

The schema's history is Alembic's (migrations/, one revision per change): opening a registry upgrades it
to `HEAD` in one transaction that holds the database's write lock from its first statement (SQLite's
`BEGIN IMMEDIATE`, PostgreSQL's transaction-level advisory lock, taken even before any table exists). Of
several processes opening a new or older registry at once, one creates or upgrades it; the others wait for
that lock, then find it done. A registry already at `HEAD` costs one look at its tables and version row,
without importing Alembic.

A registry made before migrations has no version table: it is recognised by its tables (`model_versions`
with a `dataset` column: revision 0002, without: 0001), stamped so, and upgraded from there. A registry some
of whose tables are gone is refused while the others hold rows, and made anew when none does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Engine, create_engine, event, insert, literal_column, select, text, update
from sqlalchemy import inspect as inspect_schema
from sqlalchemy.engine import Connection

from ... import settings
from . import tables as t
from .records import RegistryDamaged, RegistryError, where

if TYPE_CHECKING:
    from alembic.config import Config

    from ..store import ArtifactStore

HEAD: Final = "0002"  # the newest revision in migrations/versions (tests/test_migrations.py checks it)
MIGRATIONS: Final = Path(__file__).with_name("migrations")
# The advisory lock's key on PostgreSQL (per database): "registry" in ASCII.
_PG_LOCK_KEY: Final = 0x7265_6769_7374_7279


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite's waits for another writer's lock and lets readers read meanwhile."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    # A writer waits up to a minute for another's lock instead of failing at once; WAL lets readers read
    # while one process writes.
    made = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(made, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return made


def migrate(engine: Engine, url: str, store: ArtifactStore | None) -> None:
    """Bring the registry at `url` to `HEAD`: create it, or upgrade it (`store`, where its runs' manifests
    are, is needed to upgrade a registry from before revision 0002 that holds versions)."""
    with engine.connect() as conn:
        present, revision = _state(conn)
    if set(t.metadata.tables) <= present and revision == HEAD:
        return
    with _schema_lock(engine) as conn:
        present, revision = _state(conn)
        if set(t.metadata.tables) <= present and revision == HEAD:
            return  # another process made or upgraded it while this one waited for the lock
        if not set(t.metadata.tables) <= present and not _refuse_lost_tables(conn, present, url):
            drop_tables(conn)  # nothing held rows: a new registry, or one whose every table was lost
            present, revision = set(), None
        elif t.lock.name not in present:  # the rest is whole: only the lock's row is to be put back
            t.lock.create(conn)
            conn.execute(insert(t.lock).values(id=1, moves=0))
        if revision is None and t.versions.name in present:
            revision = "0002" if "dataset" in _columns(conn, t.versions.name) else "0001"
        config = alembic_config(conn, store, where(url))
        _refuse_unknown(config, revision, url)
        from alembic import command

        if revision is not None and t.VERSION_TABLE not in present:
            command.stamp(config, revision)
        command.upgrade(config, "head")
        conn.commit()


def alembic_config(
    connection: Connection | None = None, store: ArtifactStore | None = None, who: str = ""
) -> Config:
    """Alembic's configuration, built in code: the migrations folder, and what migrations/env.py runs on
    (`connection`, inside the caller's transaction) and a revision may need (`store`; `who`, the registry as
    its messages name it)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes.update(connection=connection, store=store, registry=who)
    return config


def drop_tables(conn: Connection) -> None:
    """Drop the registry's tables and its version record, whatever of them exists."""
    t.metadata.drop_all(conn, checkfirst=True)
    conn.execute(text(f"DROP TABLE IF EXISTS {t.VERSION_TABLE}"))


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the database's write lock from its first statement, committed by the caller."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # pysqlite would begin only at the first write, and run DDL outside any transaction.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})"))
        if t.lock.name in set(inspect_schema(conn).get_table_names()):
            # Elsewhere, the registry's own write lock (the only one, before its tables exist).
            conn.execute(update(t.lock).where(t.lock.c.id == 1).values(moves=t.lock.c.moves + 1))
        yield conn


def _state(conn: Connection) -> tuple[set[str], str | None]:
    """The tables present and the revision the version table names (None: no version table)."""
    present = set(inspect_schema(conn).get_table_names())
    if t.VERSION_TABLE not in present:
        return present, None
    return present, conn.execute(text(f"SELECT version_num FROM {t.VERSION_TABLE}")).scalar()


def _columns(conn: Connection, table: str) -> set[str]:
    return {c["name"] for c in inspect_schema(conn).get_columns(table)}


def _refuse_lost_tables(conn: Connection, present: set[str], url: str) -> list[str]:
    """Refuse a registry some of whose tables are gone while others hold rows: recreating the missing ones
    empty would silently drop versions, history or decisions. Returns the tables that hold rows."""
    ours = set(t.metadata.tables) - {t.lock.name}
    missing = sorted(ours - present)
    # Without naming columns: an older registry's tables lack some of today's.
    filled = [
        name
        for name in sorted(ours & present)
        if conn.execute(select(literal_column("1")).select_from(t.metadata.tables[name]).limit(1)).first()
    ]
    if missing and filled:
        raise RegistryDamaged(
            f"the registry {where(url)} lost its tables {', '.join(missing)} (still holding rows in "
            f"{', '.join(filled)}): recreating them empty would lose its versions or history. Rebuild it "
            f"from the runs' manifests with `{settings.PACKAGE} models rebuild`"
        )
    return filled


def _refuse_unknown(config: Config, revision: str | None, url: str) -> None:
    """Refuse a registry a newer release migrated: this one cannot know what its schema holds."""
    from alembic.script import ScriptDirectory

    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    if revision is not None and revision not in known:
        raise RegistryError(
            f"the registry {where(url)} is at schema revision {revision}, which this release does not know "
            f"(it knows up to {HEAD}): a newer release upgraded it, use that one"
        )
