"""Fixtures for the registry suites: both catalog databases, workers that start together, and
an HTTP proxy in front of moto's S3 that damages the object bytes it relays."""

from __future__ import annotations

import http.client
import importlib.util
import multiprocessing
import random
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from registry.store import Registry

WORKERS = Path(__file__).with_name("registry_workers.py")
RunTogether = Callable[[list[list[str]]], list[dict[str, Any]]]


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh catalog database: SQLite in a temp folder, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def blob_url(tmp_path: Path) -> str:
    """A local blob folder (made on first write)."""
    return (tmp_path / "blobs").as_uri()


@pytest.fixture
def reg(database_url: str, blob_url: str) -> Iterator[Registry]:
    """A registry on each catalog database with local blobs."""
    opened = Registry.open(database_url, blob_url)
    try:
        yield opened
    finally:
        opened.close()


def _load_workers() -> Any:
    spec = importlib.util.spec_from_file_location("registry_workers", WORKERS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child(job: list[str], queue: Any, index: int) -> None:
    try:
        result = _load_workers().JOBS[job[0]](job[1:])
        queue.put((index, result, None))
    except BaseException as exc:  # reported to the parent, which fails the test
        queue.put((index, None, f"{type(exc).__name__}: {exc}"))


@pytest.fixture
def run_together(tmp_path: Path) -> RunTogether:
    """Run worker jobs in forked processes released at the same instant; their results.

    Forked (not spawned) so that eight workers do not each pay for importing SQLAlchemy on a
    small machine; each opens its own registry after the fork.
    """
    context = multiprocessing.get_context("fork")

    def run(jobs: list[list[str]]) -> list[dict[str, Any]]:
        gate = tmp_path / f"gate-{time.monotonic_ns()}"
        gate.mkdir()
        go = gate / "go"
        queue = context.Queue()
        procs = []
        for index, job in enumerate(jobs):
            full = [*job, str(gate / f"ready-{index}"), str(go)]
            proc = context.Process(target=_child, args=(full, queue, index))
            proc.start()
            procs.append(proc)
        deadline = time.monotonic() + 120
        while len(list(gate.glob("ready-*"))) < len(jobs):
            if any(p.exitcode not in (None, 0) for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        go.touch()
        results: dict[int, dict[str, Any]] = {}
        failures = []
        for _ in jobs:
            index, result, error = queue.get(timeout=300)
            if error is not None:
                failures.append(error)
            else:
                results[index] = result
        for proc in procs:
            proc.join(timeout=60)
        assert failures == [], failures
        return [results[i] for i in range(len(jobs))]

    return run


class _CorruptingProxy(BaseHTTPRequestHandler):
    """Relays requests to S3 and flips a byte in every object body it sends back: at a random
    place (``random``: no two reads agree) or always the first byte (``fixed``: every read
    agrees on the same wrong bytes). Listings, heads and errors pass through untouched."""

    protocol_version = "HTTP/1.1"
    upstream = ("127.0.0.1", 0)
    mode = "random"

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
            answer = conn.getresponse()
            data = answer.read()
        finally:
            conn.close()
        if self.command == "GET" and answer.status == 200 and "/sha256/" in self.path and data:
            data = self._damage(data)
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in {"content-length", "transfer-encoding", "connection"}:
                self.send_header(name, value)
        length_sent = answer.getheader("Content-Length", "0") if self.command == "HEAD" else None
        self.send_header("Content-Length", length_sent or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _damage(self, data: bytes) -> bytes:
        where = random.randrange(len(data)) if self.mode == "random" else 0
        flip = random.randrange(1, 256) if self.mode == "random" else 0x01
        return data[:where] + bytes([data[where] ^ flip]) + data[where + 1 :]

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _relay

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def corrupting_s3(s3_endpoint: str) -> Iterator[Callable[[str], str]]:
    """Start a proxy in front of moto that damages object bytes (``"random"`` or ``"fixed"``,
    see ``_CorruptingProxy``); returns its endpoint URL."""
    servers: list[ThreadingHTTPServer] = []
    upstream = urlsplit(s3_endpoint)

    def start(mode: str) -> str:
        handler = type(
            "Proxy",
            (_CorruptingProxy,),
            {"upstream": (upstream.hostname, upstream.port), "mode": mode},
        )
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
