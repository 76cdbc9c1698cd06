"""The served-deployments process of `retrain up`: pipelines registered while it runs are
served without a restart, and a Prefect outage is waited out, not fatal."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from retrain.config.settings import Settings
from retrain.config.spec_store import register_spec
from retrain.config.specs import DEFAULT_SPECS_DIR, PipelineSpec, load_spec
from retrain.config.wiring import build_registry

pytestmark = [pytest.mark.realtime, pytest.mark.usefixtures("prefect_harness")]


class CuttableLink:
    """A loopback TCP proxy in front of the Prefect API whose link can be cut (connections
    refused, open ones reset) and restored on the same port: an outage, as clients see it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            sockets, self._open = self._open, []
            if self._listener is not None:
                sockets.append(self._listener)
                self._listener = None
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _spec(name: str) -> PipelineSpec:
    base = load_spec(DEFAULT_SPECS_DIR / "loan-default.yaml")
    return PipelineSpec.model_validate(base.model_copy(update={"name": name}).model_dump())


def _register(home: Path, name: str) -> None:
    with build_registry(Settings(home=home)) as registry:
        register_spec(registry, _spec(name))


def _deployed(name: str) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(f"retrain-model/retrain-{name}")
        except ObjectNotFound:
            return False
    return True


def _within(
    seconds: float, what: str, check: Callable[[], bool], proc: subprocess.Popen[str]
) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert proc.poll() is None, f"the serve process exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"not within {seconds:.0f} s: {what}"
        time.sleep(0.25)


def _picked_up(deployment: str) -> Callable[[], bool]:
    """Start a run of ``deployment``; the check is true once a runner has taken it (it left
    Scheduled: pending, running or already finished)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    flow_run: Any = run_deployment(deployment, timeout=0)

    def taken() -> bool:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run.id).state
        return state is not None and state.type.value not in {"SCHEDULED"}

    return taken


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, CuttableLink, subprocess.Popen[str], Path]]:
    """A `retrain pipelines serve` process talking to the harness through a cuttable link
    (cut at first); yields (home, link, process, its output file)."""
    from prefect.settings import get_current_settings

    api = get_current_settings().api.url
    assert api
    host, port = api.removeprefix("http://").split("/")[0].split(":")
    link = CuttableLink((host, int(port)))
    home, output = tmp_path / "home", tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {
        "RETRAIN_HOME": str(home),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{link.port}/api",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    with output.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "retrain", "pipelines", "serve", "--watch-interval", "0.5"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield home, link, proc, output
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        link.cut()


def test_new_pipelines_are_served_and_outages_are_waited_out(
    served: tuple[Path, CuttableLink, subprocess.Popen[str], Path],
) -> None:
    home, link, proc, output = served
    first, second, third = (f"live-{uuid.uuid4().hex[:8]}" for _ in range(3))
    _register(home, first)

    def said(text: str) -> Callable[[], bool]:
        return lambda: text in output.read_text()

    # Started while the API is down: one line, then it waits.
    _within(60, "the outage line", said("unreachable"), proc)
    link.restore()
    _within(60, f"{first} deployed", lambda: _deployed(first), proc)

    # Registered while it runs: served without a restart.
    _register(home, second)
    _within(30, f"{second} deployed", lambda: _deployed(second), proc)
    _within(10, "the announcement", said(f"now serving pipeline {second}"), proc)

    # An outage mid-run (long enough for Prefect's Runner to give up), a pipeline registered
    # meanwhile, and the API back: served again, the new one too.
    link.cut()
    _within(
        30, "the second outage line", lambda: output.read_text().count("unreachable") == 2, proc
    )
    _register(home, third)
    time.sleep(5)  # several of the Runner's one-second polls fail meanwhile
    link.restore()
    _within(60, "the recovery line", lambda: output.read_text().count("answers again") == 2, proc)
    _within(60, f"{third} served after the outage", said(f"now serving pipeline {third}"), proc)
    assert _deployed(third)
    _within(60, f"a run of {third} picked up", _picked_up(f"rollback-model/rollback-{third}"), proc)
    log = output.read_text()
    assert log.count("unreachable") == 2  # one line per outage, not one per failed poll
    assert "Traceback" not in log
    assert proc.poll() is None
