"""The registry's schema migrations (Alembic): one head, named by the code; a new registry is built by the
migrations exactly as tables.py declares it; a registry written by the release before migrations (no
version table) is recognised, stamped and kept whole, on SQLite and PostgreSQL; a registry a newer release
migrated is refused. The upgrade of a registry from before per-dataset champions (revision 0001 to 0002,
datasets from the runs' manifests, four processes at once) is in test_registry.py.

The registries "before migrations" are SQL dumps in tests/fixtures/ of registries that the previous
release's own code wrote (its `create_all` DDL and its rows), not made here by the code under test.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from factories import pipeline_result
from sqlalchemy import create_engine, inspect, text

from {{ cookiecutter.package_name }}.artifacts.registry import (
    CHALLENGER,
    CHAMPION,
    UPGRADED,
    Registry,
    RegistryError,
)
from {{ cookiecutter.package_name }}.artifacts.registry.schema import HEAD, MIGRATIONS, alembic_config
from {{ cookiecutter.package_name }}.artifacts.registry.tables import VERSION_TABLE, metadata

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(
    params=[
        pytest.param("sqlite"),
        pytest.param("postgresql", marks=pytest.mark.postgres),
    ]
)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_url(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A new, empty database of the dialect."""
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.sqlite'}"
    database: Callable[[str], str] = request.getfixturevalue("postgres_database")
    return database("psycopg")


def _load_dump(url: str, dialect: str) -> None:
    """Load the fixture registry that the release before migrations wrote, as it was dumped."""
    sql = (FIXTURES / f"registry-before-migrations.{dialect}.sql").read_text()
    if dialect == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.executescript(sql)
        return
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(sql.encode())  # no parameters: several statements in one go


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    finally:
        engine.dispose()


def _differences(url: str) -> list[Any]:
    """What autogenerate would change to make the database match tables.py (nothing, when they agree)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_the_migrations_have_one_head_and_the_code_names_it() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [HEAD]
    assert [s.revision for s in script.walk_revisions()] == ["0002", "0001"]


def test_a_new_registry_is_built_by_the_migrations_as_the_code_declares_it(new_url: str) -> None:
    registry = Registry(new_url)
    assert _revision(new_url) == HEAD
    assert _differences(new_url) == []
    assert registry.versions() == [] and registry.history() == []  # no upgrade note on a new registry
    registry.engine.dispose()


def test_a_registry_written_before_migrations_is_recognised_and_kept_whole(
    new_url: str, dialect: str
) -> None:
    _load_dump(new_url, dialect)
    assert set(metadata.tables) <= _tables(new_url) and VERSION_TABLE not in _tables(new_url)

    registry = Registry(new_url)  # no store: it already has per-dataset champions, nothing to look up
    assert _revision(new_url) == HEAD
    assert _differences(new_url) == []
    assert [(v.version, v.dataset, v.run_id, v.aliases) for v in registry.versions()] == [
        (1, "ml-100k", "r1", (CHAMPION,)),
        (2, "ml-100k", "r2", (CHALLENGER,)),
        (3, "synthetic", "r3", (CHAMPION,)),
    ]
    assert registry.get(CHAMPION, "ml-100k").serving == {
        "model": {"id": "refit-1", "uri": "file:///store/objects/refit-1"}
    }
    assert registry.get(1).metrics == {"ndcg@10": 0.31} and registry.get(2).serving is None
    assert [(d.version, d.promoted, d.decision_id) for d in registry.decisions()] == [
        (1, 1, "d1"),
        (2, 0, "d2"),
    ]
    assert [(a.champion, a.snapshot_id, a.signals) for a in registry.drift_acknowledgements()] == [
        (1, "snapshot-w2", ("rating",))
    ]
    history = [(m.id, m.dataset, m.alias, m.action) for m in registry.history()]
    assert history == [
        (1, "ml-100k", CHALLENGER, "register"),
        (2, "ml-100k", CHALLENGER, "register"),
        (3, "synthetic", CHALLENGER, "register"),
        (4, "synthetic", "", "reuse"),
        (5, "ml-100k", CHAMPION, "promote"),
        (6, "synthetic", CHAMPION, "promote"),
        (7, "synthetic", CHALLENGER, "clear"),
    ]
    assert UPGRADED not in {m.action for m in registry.history()}

    # It goes on as any registry: numbers, history ids and alias moves continue where that release stopped.
    added = registry.register(pipeline_result("r5", dataset="ml-100k"), "run r5")
    move = registry.promote(added.version, "ci", "better", expect=1)
    assert (added.version, move.id) == (4, 9)
    assert registry.rollback("ci", "worse after all", "ml-100k").to_version == 1
    assert registry.get(CHAMPION, "synthetic").version == 3
    registry.engine.dispose()
    assert Registry(new_url).get(CHAMPION, "ml-100k").version == 1  # opened again: nothing more to do


def test_a_registry_a_newer_release_migrated_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    Registry(url).engine.dispose()
    with sqlite3.connect(tmp_path / "registry.sqlite") as conn:
        conn.execute(f"UPDATE {VERSION_TABLE} SET version_num = '0099'")
    with pytest.raises(RegistryError, match="at schema revision 0099, which this release does not know"):
        Registry(url)


@pytest.mark.e2e
def test_the_documented_alembic_commands_work_on_a_scratch_database(tmp_path: Path) -> None:
    """README: `alembic -c <package>/artifacts/registry/migrations/alembic.ini -x url=... <command>`."""
    ini = MIGRATIONS / "alembic.ini"
    url = f"sqlite:///{tmp_path / 'scratch.sqlite'}"

    def alembic(*args: str) -> str:
        command = [sys.executable, "-m", "alembic", "-c", str(ini), "-x", f"url={url}", *args]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert alembic("heads").split() == [HEAD, "(head)"]
    alembic("upgrade", "head")
    assert _revision(url) == HEAD and _differences(url) == []


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
