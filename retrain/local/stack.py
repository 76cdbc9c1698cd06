"""The local stack behind ``retrain up``: child processes started in order and stopped cleanly.

Each part is a separate process (Prefect server, deployment runner, model server, alert
receiver, MLflow UI) so one crashing does not take the others down and Ctrl-C stops them all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from registry.errors import StackError

if TYPE_CHECKING:
    from retrain.config.settings import Settings

__all__ = ["Service", "Stack", "module_argv", "stack_services"]


@dataclass(frozen=True)
class Service:
    """One child process and how to tell it is ready."""

    name: str
    argv: Sequence[str]
    url: str
    ready_url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 90.0


@dataclass
class Stack:
    """Starts services in order, waits for each to be ready, and stops them in reverse."""

    log_dir: Path
    running: list[tuple[Service, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, service: Service) -> None:
        """Start ``service`` and block until its ready URL answers (or it dies)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{service.name}.log").open("ab")
        proc = subprocess.Popen(
            list(service.argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **service.env},
            start_new_session=True,  # Ctrl-C reaches us, and we stop children in order
        )
        self.running.append((service, proc))
        if service.ready_url is not None:
            self._wait_ready(service, proc)

    def _wait_ready(self, service: Service, proc: subprocess.Popen[bytes]) -> None:
        assert service.ready_url is not None
        deadline = time.monotonic() + service.ready_timeout_s
        while time.monotonic() < deadline:
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

    def wait(self) -> str | None:
        """Block until a child exits; returns its name (None when nothing runs)."""
        while self.running:
            for service, proc in self.running:
                if proc.poll() is not None:
                    return service.name
            time.sleep(0.5)
        return None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop every child, newest first: SIGINT, then SIGTERM, then SIGKILL."""
        for _service, proc in reversed(self.running):
            for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 3.0)):
                if proc.poll() is not None:
                    break
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=wait_s)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.running.clear()


def module_argv(module: str, *args: str) -> list[str]:
    """argv that runs ``python -m module args`` with this interpreter (its venv's packages)."""
    return [sys.executable, "-m", module, *args]


def stack_services(cfg: Settings, *, serve_models: bool, mlflow_ui: bool) -> list[Service]:
    """What ``retrain up`` starts, in order: the Prefect server first (the others talk to it),
    then the deployment runner, the alert receiver and, if asked, the model server and the
    MLflow UI."""
    from retrain.config.wiring import serving_url

    prefect_url = f"http://127.0.0.1:{cfg.prefect_port}"
    # Every Prefect client points at this stack's server, never at the user's own.
    env = {
        "PREFECT_HOME": str(cfg.home.resolve() / "prefect"),
        "PREFECT_API_URL": f"{prefect_url}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_URL": prefect_url,
    }
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
        Service("deployments", module_argv("retrain", "pipelines", "serve"), url="", env=env),
        Service(
            "alert-receiver",
            module_argv("retrain", "alerts", "serve"),
            url=f"{alerts}/alerts/generic",
            ready_url=f"{alerts}/healthz",
            env=env,
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
    return Service("mlflow-ui", argv, url=url, ready_url=url)
