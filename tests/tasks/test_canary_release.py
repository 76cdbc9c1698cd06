"""Canary releases against a live server and real traffic: promote the healthy, roll back faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from registry.store import Registry
from retrain.local.traffic import TrafficReport, drive_traffic, traffic_rows
from retrain.testing import register_test_bundle
from serving.app import create_app
from serving.faults import FaultInjector, FaultSpec
from serving.runner import RunningServer, start_server
from tasks.release.analysis import CanaryLimits
from tasks.release.canary import CanaryPolicy, run_canary
from tasks.release.metric_sources import MetricsSnapshot, ServerStatsSource

MODEL = "loans"
INTERVAL = 0.5
POLICY = CanaryPolicy(
    steps=[50, 100],
    interval_s=INTERVAL,
    min_requests=10,
    watch_windows=1,
    settle_timeout_s=2.0,
    limits=CanaryLimits(latency_slack_s=0.05),
)


class RecordingSource:
    """The server's stats, noting when the server first routed traffic to the canary."""

    def __init__(self, url: str, version: int) -> None:
        self.inner = ServerStatsSource(url)
        self.version = version
        self.exposed_at: float | None = None

    def snapshot(self, model: str) -> MetricsSnapshot:
        snap = self.inner.snapshot(model)
        routing = snap.routing or {}
        if self.exposed_at is None and routing.get("canary") == self.version:
            self.exposed_at = time.perf_counter()
        return snap


@pytest.fixture
def faults() -> FaultInjector:
    return FaultInjector()


@pytest.fixture
def live(registry: Registry, faults: FaultInjector) -> Iterator[RunningServer]:
    register_test_bundle(registry, MODEL, seed=0, champion=True)
    server = start_server(create_app(registry, [MODEL], poll_interval_s=0.05, faults=faults))
    yield server
    server.stop()


@pytest.fixture
def traffic(live: RunningServer) -> Iterator[Callable[[], TrafficReport]]:
    """Steady open-loop traffic (250 req/s) with delayed labels for the whole test."""
    stop = threading.Event()
    report: list[TrafficReport] = []
    rows = traffic_rows(3000, seed=5)

    def run() -> None:
        report.append(
            drive_traffic(
                live.url, MODEL, rate=250, duration_s=60, rows=rows, stop=stop,
                feedback_delay_s=0.2, keep_records=True,
            )
        )  # fmt: skip

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.3)

    def finish() -> TrafficReport:
        stop.set()
        thread.join(timeout=30)
        return report[0]

    yield finish
    stop.set()
    thread.join(timeout=30)


def _champion_only_at(url: str) -> float:
    """Seconds until the server routes nothing to a canary."""
    started = time.perf_counter()
    with httpx.Client(base_url=url) as client:
        while client.get(f"/v1/models/{MODEL}:stats").json()["routing"]["canary"] is not None:
            assert time.perf_counter() - started < 2.0
            time.sleep(0.01)
    return time.perf_counter()


@pytest.mark.parametrize("shadow", [False, True], ids=["weighted", "shadow"])
def test_healthy_canary_is_promoted(
    registry: Registry, live: RunningServer, traffic: Callable[[], TrafficReport], shadow: bool
) -> None:
    candidate = register_test_bundle(registry, MODEL, seed=0, tag="healthy retrain")
    policy = POLICY.model_copy(update={"shadow": shadow})
    outcome = run_canary(registry, MODEL, candidate, policy, ServerStatsSource(live.url))
    report = traffic()
    if shadow:  # the champion answered every caller until the promotion
        assert report.by_variant["canary"] == 0
    assert outcome.status == "promoted", outcome.reason
    aliases = registry.catalog.aliases(MODEL)
    assert aliases.get("champion") == candidate
    assert "canary" not in aliases and "release-lock" not in aliases
    assert [s.weight for s in outcome.steps if s.analysis.verdict == "success"][:2] == [50, 100]
    kinds = [e.kind for e in registry.catalog.events(MODEL)]
    assert kinds.count("canary.step") == len(outcome.steps)
    assert "canary.promoted" in kinds and "release.released" in kinds
    assert registry.catalog.get_model_version(MODEL, candidate).status == "champion"
    assert registry.catalog.get_model_version(MODEL, 1).status == "retired"
    assert report.server_errors == 0 and report.failed == 0
    assert report.by_version[candidate] > 0 and report.feedback_sent > 0


@pytest.mark.parametrize(
    "fault",
    [
        FaultSpec(error_rate=0.05),
        FaultSpec(extra_latency_s=0.2),
        FaultSpec(prediction_shift=0.4),
        FaultSpec(crash=True),
    ],
    ids=["5pct-errors", "plus-200ms", "shifted-predictions", "crash-on-predict"],
)
def test_each_injected_fault_is_rolled_back_within_budget(
    registry: Registry,
    live: RunningServer,
    faults: FaultInjector,
    traffic: Callable[[], TrafficReport],
    fault: FaultSpec,
) -> None:
    candidate = register_test_bundle(registry, MODEL, seed=0, tag="faulty")
    faults.set(MODEL, candidate, fault)
    source = RecordingSource(live.url, candidate)
    outcome = run_canary(registry, MODEL, candidate, POLICY, source)
    done = _champion_only_at(live.url)
    report = traffic()
    assert outcome.status == "aborted", [s.row() for s in outcome.steps]
    assert source.exposed_at is not None
    took = done - source.exposed_at
    assert took <= 2 * INTERVAL + 1.0, (took, [(s.elapsed_s, s.row()) for s in outcome.steps])
    assert len(outcome.steps) <= 2 and outcome.steps[-1].analysis.verdict == "failure"
    assert registry.catalog.get_alias(MODEL, "champion") == 1
    assert registry.catalog.get_alias(MODEL, "canary") is None
    assert registry.catalog.get_model_version(MODEL, candidate).status == "rejected"
    assert [e.kind for e in registry.catalog.events(MODEL, kinds=["canary.aborted"])]
    assert report.failed == 0 and report.server_errors == 0  # the champion answered for the canary


class DegradeAfterPromotion(ServerStatsSource):
    """Server stats; once the candidate is champion, its served bundle starts failing 20%."""

    def __init__(self, url: str, version: int, faults: FaultInjector) -> None:
        super().__init__(url)
        self.version, self.faults = version, faults

    def snapshot(self, model: str) -> MetricsSnapshot:
        snap = super().snapshot(model)
        routing = snap.routing or {}
        promoted = routing.get("champion") == self.version and routing.get("canary") is None
        if promoted and self.faults.get(MODEL, self.version) is None:
            self.faults.set(MODEL, self.version, FaultSpec(error_rate=0.2))
        return snap


def test_watch_window_rolls_back_a_champion_that_degrades_after_promotion(
    registry: Registry,
    live: RunningServer,
    faults: FaultInjector,
    traffic: Callable[[], TrafficReport],
) -> None:
    candidate = register_test_bundle(registry, MODEL, seed=0, tag="degrades later")
    policy = POLICY.model_copy(update={"watch_windows": 3})
    source = DegradeAfterPromotion(live.url, candidate, faults)
    outcome = run_canary(registry, MODEL, candidate, policy, source)
    traffic()
    assert outcome.status == "rolled_back", [s.row() for s in outcome.steps]
    assert outcome.reason.startswith("watch window")
    assert registry.catalog.get_alias(MODEL, "champion") == 1
    assert registry.catalog.get_model_version(MODEL, candidate).status == "rejected"
    assert registry.catalog.events(MODEL, kinds=["model.rolled_back"])
