"""What every CLI command shares: the settings, the registry, the listening sockets."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

from registry.errors import ConfigError
from retrain.config.loading import load_settings
from retrain.config.settings import Settings

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = [
    "check_port",
    "listen_socket",
    "no_prefect_api",
    "open_registry",
    "settings",
    "stack_prefect",
]


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The settings, read once per process at the entry point; a mistake is one line."""
    return load_settings()


def open_registry() -> Registry:
    """The registry named by the settings (opened on first use, never at import)."""
    from retrain.config.wiring import build_registry

    return build_registry(settings())


@contextlib.contextmanager
def stack_prefect() -> Iterator[str | None]:
    """The Prefect API URL this command talks to, set for Prefect while inside.

    ``PREFECT_API_URL`` (environment or Prefect profile) wins; without it, the API of the
    ``retrain up`` running on this home, read from ``<home>/stack.json`` (a card whose process
    is gone is ignored). Yields ``None`` when there is neither.
    """
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    from retrain.local.stack_state import read_live_state

    configured = get_current_settings().api.url
    if configured:
        yield configured
        return
    state = read_live_state(settings().home.resolve())
    if state is None:
        yield None
        return
    with temporary_settings(updates={PREFECT_API_URL: state.prefect_api_url}):
        yield state.prefect_api_url


def no_prefect_api(url: str | None) -> str:
    """The one line that says no Prefect API answered (``url``: the one tried, if any)."""
    if url:
        return f"the Prefect API at {url} does not answer: is its server (or `retrain up`) running?"
    home = settings().home.resolve()
    return (
        f"no Prefect API: PREFECT_API_URL is not set and no `retrain up` runs on {home}; "
        "start `retrain up` or export PREFECT_API_URL"
    )


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
