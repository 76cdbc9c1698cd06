"""CLI commands (train_cmds)."""

from __future__ import annotations

__all__: list[str] = []
