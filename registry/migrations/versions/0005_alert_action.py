"""Record what an alert asks for: ``retrain`` (every alert before this revision) or ``rollback``.

``retrain alerts ls`` shows it beside each alert's decision; the dispatcher decides a
``rollback`` alert at once (``rolled_back``, ``duplicate`` or ``ignored`` with the reason).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-11
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

__all__ = ["downgrade", "upgrade"]

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "alerts",
        sa.Column("action", sa.String(16), nullable=False, server_default="retrain"),
    )


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("action")
