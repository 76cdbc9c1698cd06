"""What every CLI command shares: the settings, the console, the registry, table rendering."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from retrain.config.settings import Settings

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["console", "err_console", "open_registry", "render_table", "settings"]

console = Console()
err_console = Console(stderr=True)


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The settings, read once per process at the entry point."""
    return Settings()


def open_registry() -> Registry:
    """The registry named by the settings (opened on first use, never at import)."""
    from retrain.config.wiring import build_registry

    return build_registry(settings())


def render_table(
    title: str, rows: Sequence[Mapping[str, Any]], columns: Iterable[str] | None = None
) -> Table:
    """A rich table of ``rows`` (dicts), columns in the given or first-row order."""
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    table = Table(title=title, title_justify="left")
    for col in cols:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_fmt(row.get(c)) for c in cols))
    return table


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
