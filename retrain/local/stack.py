"""The local stack behind ``retrain up``: child processes started in order, kept alive, and
stopped cleanly.

Each part is a separate process (Prefect server, deployment runner, model server, alert
receiver, MLflow UI), so one crashing does not take the others down: the supervisor restarts
a child that dies, with a growing pause, and logs it. SIGINT (Ctrl-C) and SIGTERM stop every
child, newest first, and wait for them. An optional service that is slow or fails to start
is reported as degraded and the rest of the stack runs without it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from registry.errors import StackError

if TYPE_CHECKING:
    from retrain.config.settings import Settings

__all__ = [
    "Service",
    "Stack",
    "blob_server_url",
    "module_argv",
    "stack_services",
    "stop_signals",
]


@dataclass(frozen=True)
class Service:
    """One child process and how to tell it is ready."""

    name: str
    argv: Sequence[str]
    url: str
    ready_url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    # A busy two-core machine needed over a minute for the Prefect server: wait generously.
    ready_timeout_s: float = 240.0
    optional: bool = False


@dataclass
class Stack:
    """Starts services in order, waits for each to be ready, keeps them running, and stops
    them in reverse."""

    log_dir: Path
    running: list[tuple[Service, subprocess.Popen[bytes]]] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    degraded: dict[str, str] = field(default_factory=dict)

    def start(self, service: Service, stop: Callable[[], bool] = lambda: False) -> None:
        """Start ``service`` and block until its ready URL answers (or it dies). An optional
        service that fails is stopped and listed in ``degraded`` instead of raising."""
        proc = self._spawn(service)
        self.running.append((service, proc))
        if service.ready_url is None:
            return
        try:
            self._wait_ready(service, proc, stop)
        except StackError as exc:
            if not service.optional:
                raise
            self.degraded[service.name] = str(exc)
            self.running.remove((service, proc))
            _terminate(proc, 3.0)

    def _spawn(self, service: Service) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{service.name}.log").open("ab")
        return subprocess.Popen(
            list(service.argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **service.env},
            start_new_session=True,  # Ctrl-C reaches us, and we stop children in order
        )

    def supervise(
        self,
        stop: Callable[[], bool],
        *,
        on_restart: Callable[[str, int, float], None] = lambda _name, _code, _pause: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_pause_s: float = 60.0,
    ) -> None:
        """Keep every child running until ``stop()`` says so: a child that exits is started
        again after 1 s, 2 s, 4 s ... (at most ``max_pause_s``), the others untouched."""
        due: dict[str, float] = {}
        while not stop():
            now = clock()
            for i, (service, proc) in enumerate(self.running):
                code = proc.poll()
                if code is None:
                    continue
                if service.name not in due:
                    count = self.restarts.get(service.name, 0)
                    pause = min(max_pause_s, 2.0**count)
                    due[service.name] = now + pause
                    on_restart(service.name, code, pause)
                elif now >= due[service.name]:
                    self.restarts[service.name] = self.restarts.get(service.name, 0) + 1
                    self.running[i] = (service, self._spawn(service))
                    del due[service.name]
            sleep(0.2)

    def _wait_ready(
        self, service: Service, proc: subprocess.Popen[bytes], stop: Callable[[], bool]
    ) -> None:
        assert service.ready_url is not None
        deadline = time.monotonic() + service.ready_timeout_s
        while time.monotonic() < deadline:
            if stop():  # Ctrl-C or SIGTERM while waiting: the caller stops everything
                return
            if proc.poll() is not None:
                raise StackError(
                    f"{service.name} exited with code {proc.returncode} while starting; "
                    f"see {self.log_dir / (service.name + '.log')}"
                )
            try:
                if httpx.get(service.ready_url, timeout=1.0).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise StackError(
            f"{service.name} was not ready after {service.ready_timeout_s:.0f} s; "
            f"see {self.log_dir / (service.name + '.log')}"
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop every child, newest first: SIGINT, then SIGTERM, then SIGKILL."""
        for _service, proc in reversed(self.running):
            _terminate(proc, timeout_s)
        self.running.clear()


def _terminate(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to the child's whole process group, waiting each."""
    for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 3.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait_s)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def stop_signals() -> Iterator[Callable[[], bool]]:
    """While inside, SIGINT and SIGTERM set a flag instead of killing us; yields its reader.
    ``retrain up`` run by a service manager gets SIGTERM, and must stop its children too."""
    stopping = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda _signum, _frame: stopping.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield stopping.is_set
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def module_argv(module: str, *args: str) -> list[str]:
    """argv that runs ``python -m module args`` with this interpreter (its venv's packages)."""
    return [sys.executable, "-m", module, *args]


def blob_server_url(cfg: Settings) -> str:
    """Where ``retrain up`` serves registry documents: the configured base URL, else its own
    blob server."""
    return cfg.blob_base_url or f"http://{cfg.blobs_host}:{cfg.blobs_port}"


def stack_services(cfg: Settings, *, serve_models: bool, mlflow_ui: bool) -> list[Service]:
    """What ``retrain up`` starts, in order: the Prefect server first (the others talk to it),
    then the deployment runner, the alert receiver, the blob server and, if asked, the model
    server and the MLflow UI."""
    from retrain.config.wiring import serving_url

    prefect_url = f"http://127.0.0.1:{cfg.prefect_port}"
    blobs = f"http://{cfg.blobs_host}:{cfg.blobs_port}"
    # Every Prefect client points at this stack's server, never at the user's own; artifacts
    # link to this stack's blob server.
    env = {
        "PREFECT_HOME": str(cfg.home.resolve() / "prefect"),
        "PREFECT_API_URL": f"{prefect_url}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_URL": prefect_url,
        "RETRAIN_BLOB_BASE_URL": blob_server_url(cfg),
    }
    # Runs started by an alert or by hand begin within two seconds, not Prefect's ten.
    served_env = {**env, "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    alerts = f"http://{cfg.alerts_host}:{cfg.alerts_port}"
    services = [
        Service(
            "prefect-server",
            module_argv(
                "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(cfg.prefect_port)
            ),
            url=prefect_url,
            ready_url=f"{prefect_url}/api/health",
            env=env,
        ),
        Service(
            "deployments", module_argv("retrain", "pipelines", "serve"), url="", env=served_env
        ),
        Service(
            "alert-receiver",
            module_argv("retrain", "alerts", "serve"),
            url=f"{alerts}/alerts/generic",
            ready_url=f"{alerts}/healthz",
            env=env,
        ),
        Service(
            "blob-server",
            module_argv("retrain", "serve-blobs"),
            url=f"{blobs}/blobs/sha256/",
            ready_url=f"{blobs}/healthz",
            env=env,
            ready_timeout_s=60.0,
            optional=True,  # without it the stack runs; only report links do not open
        ),
    ]
    if serve_models:
        base = serving_url(cfg)
        services.append(
            Service(
                "model-server",
                module_argv("retrain", "serve"),
                url=f"{base}/v1/models",
                ready_url=f"{base}/healthz",
                env=env,
            )
        )
    if mlflow_ui:
        services.append(_mlflow_ui(cfg))
    return services


def _mlflow_ui(cfg: Settings) -> Service:
    url = f"http://127.0.0.1:{cfg.mlflow_port}"
    argv = module_argv(
        "mlflow", "ui", "--backend-store-uri", cfg.tracking_uri, "--port", str(cfg.mlflow_port)
    )
    return Service("mlflow-ui", argv, url=url, ready_url=url, ready_timeout_s=90.0, optional=True)
