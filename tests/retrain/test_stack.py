"""The process supervisor behind `retrain up`: ready checks, failures named, clean stops."""

from __future__ import annotations

import socket
import sys
import time
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


def _sleeper(name: str) -> Service:
    return Service(name, [sys.executable, "-c", "import time; time.sleep(600)"], url="")


def test_a_child_that_dies_is_restarted_with_backoff_and_the_others_keep_running(
    tmp_path: Path,
) -> None:
    crasher = Service("crasher", [sys.executable, "-c", "raise SystemExit(4)"], url="")
    stack = Stack(log_dir=tmp_path / "logs")
    now = [0.0]
    pauses: list[tuple[str, int, float]] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds
        time.sleep(0.01)  # let the real child processes run; the clock is simulated

    try:
        stack.start(_sleeper("steady"))
        stack.start(crasher)
        (steady,) = [p for s, p in stack.running if s.name == "steady"]
        stack.supervise(
            lambda: stack.restarts.get("crasher", 0) >= 3,
            on_restart=lambda name, code, pause: pauses.append((name, code, pause)),
            clock=lambda: now[0],
            sleep=sleep,
        )
        assert steady.poll() is None  # untouched while its neighbour crashed three times
        assert [p[:2] for p in pauses] == [("crasher", 4)] * 3
        assert [p[2] for p in pauses] == [1.0, 2.0, 4.0]
    finally:
        stack.stop(timeout_s=5)


def test_an_optional_service_that_never_gets_ready_is_degraded_not_fatal(tmp_path: Path) -> None:
    slow = Service(
        "mlflow-ui",
        [sys.executable, "-c", "import time; time.sleep(600)"],
        url="",
        ready_url=f"http://127.0.0.1:{_free_port()}/",
        ready_timeout_s=1.0,
        optional=True,
    )
    stack = Stack(log_dir=tmp_path / "logs")
    try:
        stack.start(_sleeper("steady"))
        stack.start(slow)
        assert "not ready after 1 s" in stack.degraded["mlflow-ui"]
        assert [s.name for s, _ in stack.running] == ["steady"]
    finally:
        stack.stop(timeout_s=5)


_SUPERVISOR = """
import sys, time
from pathlib import Path
from retrain.local.stack import Service, Stack, stop_signals
stack = Stack(log_dir=Path(sys.argv[1]))
child = [sys.executable, "-c", "import time; time.sleep(600)"]
with stop_signals() as stopping:
    for name in ("a", "b"):
        stack.start(Service(name, child, url=""))
    print(" ".join(str(p.pid) for _, p in stack.running), flush=True)
    try:
        stack.supervise(stopping)
    finally:
        stack.stop(timeout_s=5)
print("stopped", flush=True)
"""


def test_sigterm_stops_every_child_and_waits_for_them(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess

    parent = subprocess.Popen(
        [sys.executable, "-c", _SUPERVISOR, str(tmp_path / "logs")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == 0
    assert "stopped" in parent.stdout.read()
    for pid in pids:  # no child left holding its port
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_stop_while_waiting_for_readiness_does_not_wait_out_the_timeout(tmp_path: Path) -> None:
    never_ready = Service(
        "prefect-server",
        [sys.executable, "-c", "import time; time.sleep(600)"],
        url="",
        ready_url=f"http://127.0.0.1:{_free_port()}/",
        ready_timeout_s=240.0,
    )
    stack = Stack(log_dir=tmp_path / "logs")
    asked = [0]

    def stop() -> bool:  # Ctrl-C arrives on the third readiness check
        asked[0] += 1
        return asked[0] >= 3

    started = time.monotonic()
    try:
        stack.start(never_ready, stop=stop)
        assert time.monotonic() - started < 10.0
    finally:
        stack.stop(timeout_s=5)
    assert stack.running == []
