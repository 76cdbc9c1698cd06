"""Alembic migrations of the registry catalog, applied by ``registry.database.ensure_schema``."""

from __future__ import annotations

__all__: list[str] = []
