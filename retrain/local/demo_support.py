"""The moving parts of ``retrain demo``: weekly data, background traffic, in-process launcher."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from retrain.terminal import console, render_table

if TYPE_CHECKING:
    from registry.store import Registry
    from retrain.config.specs import PipelineSpec
    from retrain.local.demo_services import ThreadLauncher

__all__ = [
    "DEMO_START",
    "MODEL",
    "DemoClock",
    "Timeline",
    "demo_spec",
    "free_port",
    "post_alert",
    "print_decisions",
    "wait_for_alert_run",
    "write_week",
]

DEMO_START = datetime(2026, 1, 5, tzinfo=UTC)
MODEL = "loan-default"


@dataclass
class DemoClock:
    """The story's time: noon on Monday of the current week (trigger cooldowns follow it)."""

    week: int = 1

    def now(self) -> datetime:
        return DEMO_START + timedelta(weeks=self.week - 1, hours=12)

    def time(self) -> float:
        """Seconds since the epoch, for components that take a ``clock()`` callable."""
        return self.now().timestamp()


def demo_spec(home: Path, epochs: int) -> PipelineSpec:
    """The shipped loan-default spec, reading the demo's folders, with short canary windows."""
    from retrain.config.specs import default_spec_paths, load_spec
    from tasks.release.analysis import CanaryLimits
    from tasks.release.policy import CanaryPolicy

    spec = load_spec(next(p for p in default_spec_paths() if p.stem == MODEL))
    # Short windows so the story fits in minutes; a retrain after drift legitimately moves
    # predictions, so the distribution check is looser than the default.
    canary = CanaryPolicy(
        interval_s=2.0,
        min_requests=20,
        watch_windows=1,
        steps=[10.0, 25.0, 50.0, 100.0],
        limits=CanaryLimits(max_prediction_shift=0.4),
    )
    return spec.model_copy(
        update={
            "dataset": spec.dataset.model_copy(
                update={"source": str(home / "window"), "recent": str(home / "recent")}
            ),
            "training": spec.training.model_copy(update={"max_epochs": epochs}),
            "canary": canary,
        }
    )


def write_week(folder: Path, week: int, scenario: str, rows: int) -> Path:
    """Simulate production week ``week`` (1-based) as ``folder/week-NN.parquet``."""
    from tasks.data.simulator import simulate

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
