"""A minimal HTTP/1.1 keep-alive client for loopback load (asyncio streams, no parsing extras).

The traffic driver sends hundreds of small requests a second from the same machine as the
server; a general client's per-request cost would be measured as server latency on a small box.
This one writes pre-encoded requests on pooled connections and reads ``Content-Length`` bodies.
"""

from __future__ import annotations

import asyncio
import socket

__all__ = ["LoopbackConnections", "LoopbackHTTPError"]

_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class LoopbackHTTPError(Exception):
    """The connection failed or the answer was not HTTP/1.1 with a Content-Length."""


class LoopbackConnections:
    """Up to ``limit`` keep-alive connections to ``host:port``, reused across requests."""

    def __init__(self, host: str, port: int, *, limit: int = 64, timeout_s: float = 10.0):
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._idle: asyncio.Queue[_Conn] = asyncio.Queue()
        self._slots = asyncio.Semaphore(limit)

    async def _connect(self) -> _Conn:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST ``body`` as JSON; (status, response body). Raises ``LoopbackHTTPError``."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"{extra}Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        async with self._slots:
            conn = self._idle.get_nowait() if not self._idle.empty() else None
            try:
                if conn is None:
                    conn = await self._connect()
                status, payload, keep = await asyncio.wait_for(
                    self._exchange(conn, head + body), self.timeout_s
                )
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                if conn is not None:
                    conn[1].close()
                raise LoopbackHTTPError(f"{type(exc).__name__}: {exc}") from exc
            if keep:
                self._idle.put_nowait(conn)
            else:
                conn[1].close()
            return status, payload

    @staticmethod
    async def _exchange(conn: _Conn, request: bytes) -> tuple[int, bytes, bool]:
        reader, writer = conn
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length, keep = None, True
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                keep = False
        if length is None:
            raise ValueError("response without Content-Length")
        return int(head[9:12]), await reader.readexactly(length), keep

    async def close(self) -> None:
        """Close every idle connection."""
        while not self._idle.empty():
            self._idle.get_nowait()[1].close()
