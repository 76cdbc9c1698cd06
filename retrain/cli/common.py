"""What every CLI command shares: the settings, the console, the registry, table rendering."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from registry.errors import ConfigError
from retrain.config.loading import load_settings
from retrain.config.settings import Settings

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = [
    "check_port",
    "console",
    "err_console",
    "listen_socket",
    "open_registry",
    "render_table",
    "settings",
]

# emoji=False: a ":smile:" in a user's name stays as typed
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The settings, read once per process at the entry point; a mistake is one line."""
    return load_settings()


def open_registry() -> Registry:
    """The registry named by the settings (opened on first use, never at import)."""
    from retrain.config.wiring import build_registry

    return build_registry(settings())


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


def check_port(port: int, what: str) -> None:
    """Refuse a port outside 1-65535; ``what`` names where it came from: an option
    (``--port``) or a setting (``RETRAIN_SERVE_PORT``)."""
    if not 1 <= port <= 65535:
        given = f"{what} {port}" if what.startswith("-") else f"{what}={port}"
        raise ConfigError(f"{given} is not a TCP port: use one in 1-65535")


def listen_socket(host: str, port: int, what: str) -> socket.socket:
    """A socket bound to ``host:port`` for a server to listen on, or one line saying why not
    (port out of range, host unknown, port in use); binding first means no server starts half
    way and no process hangs on a port it cannot have."""
    check_port(port, what)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, UnicodeError) as exc:
        raise ConfigError(
            f"cannot listen on host {host!r} ({getattr(exc, 'strerror', None) or exc}): "
            "use an address of this machine such as 127.0.0.1"
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use: stop what holds it or choose "
                f"another with {what}"
            ) from None
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}): check {what}"
        ) from None
    return sock
