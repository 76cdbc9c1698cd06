"""The demo's running parts: model server, alert receiver, in-process launcher, traffic."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from registry.store import Registry
    from retrain.config.settings import Settings
    from retrain.local.demo_support import DemoClock
    from serving.faults import FaultInjector
    from serving.runner import RunningServer

__all__ = ["BackgroundTraffic", "DemoServices", "ThreadLauncher"]


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
        from retrain.local.traffic import drive_traffic

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
    """Starts retrain flow runs in this process, as a worker would: the flow run is created in
    Prefect first (its id is the run id the receiver records), then executed on a thread. The
    demo has no workers; keys dedupe runs like Prefect's idempotency keys."""

    def __init__(self, settings: Settings, clock: DemoClock) -> None:
        self.settings, self.clock = settings, clock
        self.runs: dict[str, threading.Thread] = {}
        self.results: dict[str, Any] = {}
        self._by_key: dict[str, str] = {}
        self._lock = threading.Lock()

    def start_retrain(self, model: str, *, idempotency_key: str, reason: str) -> str:
        from prefect.client.orchestration import get_client

        from flows.retrain_model import retrain_model

        with self._lock:
            if idempotency_key in self._by_key:
                return self._by_key[idempotency_key]
            as_of = self.clock.now()
            shown = {"pipeline": model, "trigger": "alert", "as_of": as_of.isoformat()}
            with get_client(sync_client=True) as client:
                flow_run = client.create_flow_run(retrain_model, parameters=shown, tags=["alert"])
            run_id = str(flow_run.id)
            parameters = {
                "pipeline": model,
                "trigger": "alert",
                "as_of": as_of,
                "settings": self.settings,
            }
            thread = threading.Thread(
                target=self._run,
                args=(run_id, flow_run, parameters),
                name=f"retrain-{model}",
                daemon=True,
            )
            self._by_key[idempotency_key] = run_id
            self.runs[run_id] = thread
        thread.start()
        return run_id

    def _run(self, run_id: str, flow_run: Any, parameters: dict[str, Any]) -> None:
        from prefect.flow_engine import run_flow

        from flows.retrain_model import retrain_model

        try:
            self.results[run_id] = run_flow(retrain_model, flow_run=flow_run, parameters=parameters)
        except Exception as exc:  # the summary reports it; the demo goes on
            self.results[run_id] = exc

    def is_running(self, run_id: str) -> bool:
        thread = self.runs.get(run_id)
        return thread is not None and thread.is_alive()

    def wait_all(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in list(self.runs.values()):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


@dataclass
class DemoServices:
    """What runs beside the story: the model server with its faults, the alert receiver with
    its launcher, and simulated users."""

    server: RunningServer
    receiver: RunningServer
    faults: FaultInjector
    launcher: ThreadLauncher
    traffic: BackgroundTraffic

    @classmethod
    def start(
        cls, registry: Registry, settings: Settings, clock: DemoClock, token: str
    ) -> DemoServices:
        from retrain.alerts.receiver import create_app as create_alert_app
        from retrain.local.demo_support import MODEL
        from retrain.terminal import console
        from serving.app import create_app
        from serving.faults import FaultInjector
        from serving.runner import start_server

        faults = FaultInjector()
        server = start_server(
            create_app(registry, [MODEL], poll_interval_s=0.2, faults=faults),
            port=settings.serve_port,
        )
        launcher = ThreadLauncher(settings, clock)
        receiver = start_server(
            create_alert_app(registry, launcher, token=token, clock=clock.time),
            port=settings.alerts_port,
        )
        traffic = BackgroundTraffic(server.url, MODEL, rate=150.0)
        traffic.start()
        console.print(
            f"model server {server.url}, alert receiver {receiver.url}, traffic 150 req/s"
        )
        return cls(server, receiver, faults, launcher, traffic)

    def stop(self) -> None:
        self.traffic.stop()
        self.receiver.stop()
        self.server.stop()
