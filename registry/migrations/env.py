"""Alembic environment: runs on the connection the catalog hands over (under its lock)."""

from __future__ import annotations

from alembic import context

from registry.schema import Base

__all__: list[str] = []

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("registry migrations run through registry.database.ensure_schema")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
