"""Champions per dataset: every version carries the dataset it was trained on, and the model refit to
serve it once promoted; aliases are keyed by dataset and name; history rows name their dataset.

The versions of an older registry get the dataset their run's manifest names (or its data settings give),
read from the artifact store the registry passes in (`unknown` when the manifest is gone); its aliases and
history rows get the dataset of the version they name, so the champion stays the champion, now of its
dataset. One history row (action `upgrade`) says so, when there were versions to name.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from {{ cookiecutter.package_name }}.artifacts.registry.records import (
    NO_ALIAS,
    UPGRADED,
    RegistryError,
    default_actor,
    now,
    stored_dataset,
)

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The tables as this revision leaves them, as far as it writes them.
_versions = sa.table("model_versions", sa.column("version"), sa.column("dataset"))
_moves = sa.table(
    "alias_moves",
    *(sa.column(name) for name in ("at", "dataset", "alias", "action", "from_version", "to_version")),
    *(sa.column(name) for name in ("actor", "reason")),
)


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT version, run_id, manifest_uri FROM model_versions")).all()
    store = context.config.attributes.get("store")
    if rows and store is None:
        raise RegistryError(
            f"the registry {context.config.attributes.get('registry', '')} predates per-dataset champions: "
            "open it with its artifact store (any command does) to upgrade it"
        )
    # Added columns only: SQLite adds them in place (copying model_versions would break the other
    # tables' references to it).
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("dataset", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("serving", sa.Text, nullable=True))
    with op.batch_alter_table("alias_moves") as batch:
        batch.add_column(sa.Column("dataset", sa.String(64), nullable=False, server_default=""))

    named: dict[int, str] = {}
    if rows:  # with a store: refused above otherwise
        assert store is not None
        named = {version: stored_dataset(store, run_id, uri) for version, run_id, uri in rows}
    for version, dataset in named.items():
        conn.execute(sa.update(_versions).where(_versions.c.version == version).values(dataset=dataset))

    # The alias table's key gains the dataset: made anew, its rows carried over.
    held = conn.execute(sa.text("SELECT alias, version, moved_at FROM aliases")).all()
    op.drop_table("aliases")
    aliases = op.create_table(
        "aliases",
        sa.Column("dataset", sa.String(64), primary_key=True),
        sa.Column("alias", sa.String(32), primary_key=True),
        sa.Column("version", sa.Integer, sa.ForeignKey("model_versions.version"), nullable=False),
        sa.Column("moved_at", sa.String(32), nullable=False),
    )
    op.bulk_insert(
        aliases,
        [{"dataset": named[v], "alias": alias, "version": v, "moved_at": at} for alias, v, at in held],
    )

    named_version = sa.func.coalesce(_moves.c.to_version, _moves.c.from_version)
    of_version = sa.select(_versions.c.dataset).where(_versions.c.version == named_version)
    conn.execute(
        sa.update(_moves)
        .where(named_version.is_not(None))
        .values(dataset=sa.func.coalesce(of_version.scalar_subquery(), ""))
    )
    if not named:
        return
    counts = {d: list(named.values()).count(d) for d in sorted(set(named.values()))}
    note = ", ".join(f"{d}: {n} versions" for d, n in counts.items())
    op.bulk_insert(
        _moves,
        [
            {
                "at": now(),
                "dataset": "",
                "alias": NO_ALIAS,
                "action": UPGRADED,
                "from_version": None,
                "to_version": None,
                "actor": default_actor(),
                "reason": f"champions kept per dataset; datasets from the runs' manifests ({note})",
            }
        ],
    )


def downgrade() -> None:
    raise RuntimeError("the registry's migrations go forward only: restore a copy of the database to go back")
