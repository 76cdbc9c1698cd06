"""What the front door prints with: the consoles and the tables, shared by the CLI and the
local stack, demo and traffic (user text is always shown literally, never as rich markup)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["console", "err_console", "render_table"]

# emoji=False: a ":smile:" in a user's name stays as typed
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


def render_table(
    title: str, rows: Sequence[Mapping[str, Any]], columns: Iterable[str] | None = None
) -> Table:
    """A rich table of ``rows`` (dicts), columns in the given or first-row order; the title and
    the cells are shown literally (a ``[red]`` in a model name is never rich markup)."""
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    table = Table(title=Text(title), title_justify="left")
    for col in cols:
        table.add_column(Text(col))
    for row in rows:
        table.add_row(*(Text(_fmt(row.get(c))) for c in cols))
    return table


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
