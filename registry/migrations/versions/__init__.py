"""One module per catalog schema revision."""

from __future__ import annotations

__all__: list[str] = []
