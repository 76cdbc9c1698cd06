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

import httpx

from registry.errors import StackError

__all__ = ["Service", "Stack", "module_argv"]


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
