"""The process supervisor behind `retrain up`: ready checks, failures named, clean stops."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import httpx
import pytest

from registry.errors import StackError
from retrain.local.stack import Service, Stack


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_services_start_when_ready_and_stop_on_request(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    web = Service(
        "web",
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        url=url,
        ready_url=url,
        ready_timeout_s=30,
    )
    stack = Stack(log_dir=tmp_path / "logs")
    try:
        stack.start(web)
        assert httpx.get(url, timeout=5).status_code == 200
        (proc,) = [p for _, p in stack.running]
    finally:
        stack.stop(timeout_s=5)
    assert proc.poll() is not None and stack.running == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)


def test_a_service_that_dies_while_starting_is_named_with_its_log(tmp_path: Path) -> None:
    broken = Service(
        "broken",
        [sys.executable, "-c", "import sys; print('bad config'); sys.exit(3)"],
        url="",
        ready_url=f"http://127.0.0.1:{_free_port()}/",
        ready_timeout_s=30,
    )
    stack = Stack(log_dir=tmp_path / "logs")
    with pytest.raises(
        StackError, match=r"broken exited with code 3 while starting; see .*broken\.log"
    ):
        stack.start(broken)
    stack.stop()
    assert "bad config" in (tmp_path / "logs" / "broken.log").read_text()
