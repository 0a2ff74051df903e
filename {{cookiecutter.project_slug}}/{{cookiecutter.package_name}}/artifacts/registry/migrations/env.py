"""Alembic's entry to the registry's migrations. The registry runs them on open (schema.py), on the
connection it passes in, inside its transaction under the write lock; a developer runs them from the
command line on the database named by `-x url=...` (README, "Registry schema migrations")."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from {{ cookiecutter.package_name }}.artifacts.registry.tables import VERSION_TABLE, metadata


def _run(connection: Connection) -> None:
    # Batch mode: on SQLite, a change ALTER TABLE cannot make is made by copying the table (autogenerate
    # writes revisions that way too).
    context.configure(
        connection=connection, target_metadata=metadata, version_table=VERSION_TABLE, render_as_batch=True
    )
    # Inside the registry's transaction this begins none; from the command line it commits at the end.
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("the registry's migrations run on a database (revision 0002 reads its rows): drop --sql")
passed = context.config.attributes.get("connection")
if passed is not None:
    _run(passed)
else:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("name the registry's database: alembic -c ... -x url=sqlite:///path/registry.sqlite")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()
