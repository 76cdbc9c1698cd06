"""The moving parts of ``retrain demo``: weekly data, background traffic, in-process launcher."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from retrain.cli.common import console, render_table

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = [
    "BackgroundTraffic",
    "ThreadLauncher",
    "Timeline",
    "free_port",
    "post_alert",
    "print_decisions",
    "wait_for_alert_run",
    "write_week",
]

DEMO_START = datetime(2026, 1, 5, tzinfo=UTC)


def write_week(folder: Path, week: int, scenario: str, rows: int) -> Path:
    """Simulate production week ``week`` (1-based) as ``folder/week-NN.parquet``."""
    from tasks.simulator import simulate

    folder.mkdir(parents=True, exist_ok=True)
    frame = simulate(
        rows, scenario=scenario, seed=week, start=DEMO_START + timedelta(weeks=week - 1)
    )
    path = folder / f"week-{week:02d}.parquet"
    frame.to_parquet(path, index=False)
    return path


@dataclass
class Timeline:
    """What happened, in order, for the closing summary table."""

    started: float = field(default_factory=time.perf_counter)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, week: int, what: str, versions: str, decision: str, since: float) -> None:
        self.rows.append(
            {
                "week": week,
                "what happened": what,
                "versions": versions,
                "decision": decision,
                "took": f"{time.perf_counter() - since:.1f} s",
            }
        )


class BackgroundTraffic:
    """Simulated users calling the model server until stopped; the scenario can change."""

    def __init__(self, base_url: str, model: str, *, rate: float) -> None:
        self.base_url, self.model, self.rate = base_url, model, rate
        self.scenario = "stable"
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from retrain.traffic import drive_traffic

        seed = 1000
        while not self._stop.is_set():
            seed += 1
            report = drive_traffic(
                self.base_url,
                self.model,
                rate=self.rate,
                duration_s=5.0,
                scenario=self.scenario,
                seed=seed,
                feedback_delay_s=0.5,
                stop=self._stop,
            )
            self.sent += report.sent

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


class ThreadLauncher:
    """Starts retrain flow runs in this process (the demo has no workers); keys dedupe runs."""

    def __init__(self) -> None:
        self.runs: dict[str, threading.Thread] = {}
        self.results: dict[str, Any] = {}
        self._by_key: dict[str, str] = {}
        self._lock = threading.Lock()

    def start_retrain(self, model: str, *, idempotency_key: str, reason: str) -> str:
        with self._lock:
            if idempotency_key in self._by_key:
                return self._by_key[idempotency_key]
            run_id = str(uuid.uuid4())
            thread = threading.Thread(
                target=self._run, args=(run_id, model), name=f"retrain-{model}", daemon=True
            )
            self._by_key[idempotency_key] = run_id
            self.runs[run_id] = thread
        thread.start()
        return run_id

    def _run(self, run_id: str, model: str) -> None:
        from flows.retrain import retrain_model

        try:
            self.results[run_id] = retrain_model(pipeline=model, trigger="alert")
        except Exception as exc:  # the summary reports it; the demo goes on
            self.results[run_id] = exc

    def is_running(self, run_id: str) -> bool:
        thread = self.runs.get(run_id)
        return thread is not None and thread.is_alive()

    def wait_all(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in list(self.runs.values()):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def print_decisions(registry: Registry, model: str) -> None:
    """The gate decisions and canary steps, as the registry's event log recorded them."""
    gates = [
        {
            "version": e.payload["candidate_version"],
            "against": e.payload["champion_version"],
            "verdict": e.payload["verdict"],
            "metric": e.payload["metric"],
            "difference": e.payload["difference"],
            "CI low": e.payload["ci_low"],
            "CI high": e.payload["ci_high"],
        }
        for e in registry.catalog.events(model, kinds=["gate.decision"])
    ]
    console.print(render_table("Gate decisions (paired bootstrap, 1000 resamples)", gates))
    steps = [
        {
            "version": e.versions[-1] if e.versions else None,
            **{
                label: e.payload.get(key)
                for label, key in (
                    ("step", "step"),
                    ("traffic %", "weight"),
                    ("verdict", "verdict"),
                    ("requests", "canary_requests"),
                    ("errors", "error_rate"),
                    ("p95 s", "p95_latency_s"),
                    ("KS shift", "prediction_shift"),
                )
            },
        }
        for e in registry.catalog.events(model, kinds=["canary.step"])
    ]
    console.print(render_table("Canary analysis, step by step", steps))


def wait_for_alert_run(launcher: ThreadLauncher, timeout_s: float = 240.0) -> None:
    """Wait until the receiver has started its run and that run has finished."""
    deadline = time.monotonic() + timeout_s
    while not launcher.runs and time.monotonic() < deadline:
        time.sleep(0.1)
    with console.status("alert-triggered retrain running (train → gate → canary)…"):
        launcher.wait_all(max(1.0, deadline - time.monotonic()))


def post_alert(base_url: str, token: str, model: str, i: int) -> int:
    """Send notification ``i`` of an Alertmanager-style drift alert for ``model``."""
    now = datetime.now(UTC).isoformat()
    body: dict[str, Any] = {
        "version": "4",
        "groupKey": '{}:{alertname="FeatureDrift"}',
        "status": "firing",
        "receiver": "retrain",
        "groupLabels": {"alertname": "FeatureDrift"},
        "commonLabels": {"alertname": "FeatureDrift", "model": model, "severity": "warning"},
        "externalURL": "http://alertmanager.local",
        "alerts": [
            {
                "status": "firing",
                "fingerprint": "5f1d0c7e9a2b4c11",
                "startsAt": now,
                "labels": {"alertname": "FeatureDrift", "model": model},
                "annotations": {"summary": f"feature drift (notification {i + 1})"},
            }
        ],
    }
    response = httpx.post(
        f"{base_url}/alerts/alertmanager",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    return response.status_code


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
