"""Refuse TRUNCATE of the event log on PostgreSQL, as UPDATE and DELETE already are.

Row-level triggers do not fire for TRUNCATE, so 0001's ``events_no_update`` let
``TRUNCATE events`` empty the audit trail. A statement-level BEFORE TRUNCATE trigger calling
the same ``events_append_only()`` function refuses it (also ``TRUNCATE ... CASCADE`` and a
TRUNCATE of a table that lists ``events`` with others). SQLite has no TRUNCATE: its
``DELETE FROM events`` is refused by 0001's DELETE trigger.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

__all__ = ["downgrade", "upgrade"]

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events "
            "FOR EACH STATEMENT EXECUTE FUNCTION events_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS events_no_truncate ON events")
