"""The registry as the release before per-dataset champions made it: versions, one champion and one
challenger for the whole registry, their history, promotion decisions and drift events.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    lock = op.create_table(
        "registry_lock", sa.Column("id", sa.Integer, primary_key=True), sa.Column("moves", sa.Integer)
    )
    op.create_table(
        "model_versions",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("model_uri", sa.Text, nullable=False),
        sa.Column("snapshot_id", sa.String(64), nullable=False),
        sa.Column("manifest_id", sa.String(64), nullable=False),
        sa.Column("manifest_uri", sa.Text, nullable=False),
        sa.Column("config_fingerprint", sa.String(64), nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("artifacts", sa.Text, nullable=False),
    )
    op.create_table(
        "aliases",
        sa.Column("alias", sa.String(32), primary_key=True),
        sa.Column("version", sa.Integer, sa.ForeignKey("model_versions.version"), nullable=False),
        sa.Column("moved_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "alias_moves",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("alias", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_version", sa.Integer, nullable=True),
        sa.Column("to_version", sa.Integer, nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("decision_id", sa.String(64), nullable=True),
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, sa.ForeignKey("model_versions.version"), nullable=False),
        sa.Column("promoted", sa.Integer, nullable=False),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("decision_id", sa.String(64), nullable=False),
    )
    op.create_table(
        "drift_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("champion", sa.Integer, sa.ForeignKey("model_versions.version"), nullable=False),
        sa.Column("snapshot_id", sa.String(64), nullable=False),
        sa.Column("signals", sa.Text, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.UniqueConstraint("champion", "snapshot_id"),
    )
    op.bulk_insert(lock, [{"id": 1, "moves": 0}])


def downgrade() -> None:
    raise RuntimeError("the registry's migrations go forward only: restore a copy of the database to go back")
