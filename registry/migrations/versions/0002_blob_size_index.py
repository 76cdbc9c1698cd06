"""Index blobs by size, so a put can tell cheaply that its bytes cannot be stored yet.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from alembic import op

__all__ = ["downgrade", "upgrade"]

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_blobs_size", "blobs", ["size"])


def downgrade() -> None:
    op.drop_index("ix_blobs_size", table_name="blobs")
