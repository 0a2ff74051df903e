"""The registry's tables as the code reads and writes them today: the schema at the newest migration.

A change here needs a migration that brings existing registries to it (migrations/, README "Registry schema
migrations"); tests/test_migrations.py checks that the migrations, run from the first, build exactly these.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, Text, UniqueConstraint

# Alembic's record of the revision a registry is at. Not alembic's default name: the registry may share its
# database with something else that Alembic migrates (the Prefect server's, say).
VERSION_TABLE: Final = "registry_alembic_version"

metadata = MetaData()

# One row, bumped first by every transaction that moves an alias: that write takes the database's write lock.
lock = Table("registry_lock", metadata, Column("id", Integer, primary_key=True), Column("moves", Integer))

versions = Table(
    "model_versions",
    metadata,
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

# Keyed by dataset and name: two champions of one dataset cannot exist.
aliases = Table(
    "aliases",
    metadata,
    Column("dataset", String(64), primary_key=True),
    Column("alias", String(32), primary_key=True),
    Column("version", Integer, ForeignKey("model_versions.version"), nullable=False),
    Column("moved_at", String(32), nullable=False),
)

moves = Table(
    "alias_moves",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(32), nullable=False),
    Column("alias", String(32), nullable=False),
    # register | reuse | promote | rollback | clear | undecided | rebuild | upgrade
    Column("action", String(32), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("decision_id", String(64), nullable=True),  # the stored promotion decision, when there is one
    Column("dataset", String(64), nullable=False, server_default=""),  # "": a note about the whole registry
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(32), nullable=False),
    Column("version", Integer, ForeignKey("model_versions.version"), nullable=False),
    Column("promoted", Integer, nullable=False),
    Column("reference", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("decision_id", String(64), nullable=False),
)

drift_events = Table(
    "drift_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(32), nullable=False),
    Column("champion", Integer, ForeignKey("model_versions.version"), nullable=False),
    Column("snapshot_id", String(64), nullable=False),
    Column("signals", Text, nullable=False),  # JSON list: the drifted features, and "decay"
    Column("actor", String(200), nullable=False),
    UniqueConstraint("champion", "snapshot_id"),  # one event per champion and data window, whatever happens
)
