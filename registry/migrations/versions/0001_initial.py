"""The catalog: blobs, models and versions, aliases, datasets, events, artifacts, alerts.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from registry.schema import UTCDateTime

__all__ = ["downgrade", "upgrade"]

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_PG_APPEND_ONLY = """
CREATE FUNCTION events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
"""


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("digest", sa.String(71), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(255), nullable=False),
        sa.Column("store_checksum", sa.String(128), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "models",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("last_version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), sa.ForeignKey("models.name"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("bundle_digest", sa.String(71), sa.ForeignKey("blobs.digest"), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("lineage", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("model", "version", name="uq_model_versions_model_version"),
    )
    op.create_table(
        "aliases",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model", "version"], ["model_versions.model", "model_versions.version"]
        ),
    )
    op.create_table(
        "datasets",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, index=True),
        sa.Column("digest", sa.String(71), sa.ForeignKey("blobs.digest"), nullable=False, index=True),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("schema", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("name", "digest", name="uq_datasets_name_digest"),
    )
    op.create_table(
        "events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(64), nullable=False, index=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("versions", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_events_model_id", "events", ["model", "id"])
    op.create_table(
        "artifacts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("digest", sa.String(71), sa.ForeignKey("blobs.digest"), nullable=False, index=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_artifacts_kind_name_id", "artifacts", ["kind", "name", "id"])
    op.create_table(
        "alerts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("dedup_key", sa.String(255), nullable=False, unique=True),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("status", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_alerts_state_received", "alerts", ["state", "received_at"])
    # The event log is the audit trail: the database itself refuses edits and deletions.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_APPEND_ONLY)
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER events_no_{verb.lower()} BEFORE {verb} ON events "
                "BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS events_no_update ON events")
        op.execute("DROP FUNCTION IF EXISTS events_append_only()")
    for table in (
        "alerts", "artifacts", "events", "datasets", "aliases", "model_versions", "models", "blobs"
    ):
        op.drop_table(table)
