"""Canary releases: promote the healthy, roll back faults, watch after promotion.

The release logic runs on a ``ManualClock`` against a ``ScriptedMetricsSource`` (each window's
counters recorded as the server records them), so windows take production-like intervals at no
cost and every timing is exact. A few ``realtime`` tests run the same releases against a live
server with real traffic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping

import httpx
import pytest

from registry.store import Registry
from retrain.local.traffic import TrafficReport, drive_traffic, traffic_rows
from retrain.testing import (
    ManualClock,
    Reading,
    ScriptedMetricsSource,
    ScriptEntry,
    canary_script,
    window_counters,
)
from retrain.testing_serving import register_test_bundle
from serving.app import create_app
from serving.faults import FaultInjector, FaultSpec
from serving.runner import RunningServer, start_server
from tasks.release.analysis import CanaryLimits
from tasks.release.canary import run_canary
from tasks.release.metric_sources import MetricsSnapshot, ServerStatsSource, VersionCounters
from tasks.release.policy import CanaryOutcome, CanaryPolicy

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
CHAMPION, CANDIDATE = 1, 2
# One window per phase, as the server would count it: at 50% both versions answer, at 100% and
# in the watch only the candidate does (the analysis then compares with the champion's baseline).
AT_50: Mapping[int, VersionCounters] = {
    CHAMPION: window_counters(100),
    CANDIDATE: window_counters(100),
}
AT_100: Mapping[int, VersionCounters] = {CANDIDATE: window_counters(200)}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def champion(registry: Registry) -> int:
    return register_test_bundle(registry, MODEL, seed=0, champion=True)


def _release(
    registry: Registry,
    script: list[ScriptEntry],
    clock: ManualClock,
    policy: CanaryPolicy = POLICY,
    tag: str = "candidate",
) -> tuple[CanaryOutcome, ScriptedMetricsSource]:
    candidate = register_test_bundle(registry, MODEL, seed=0, tag=tag)
    assert candidate == CANDIDATE
    source = ScriptedMetricsSource(script, clock=clock.monotonic, model=MODEL)
    outcome = run_canary(
        registry, MODEL, candidate, policy, source, sleep=clock.sleep, clock=clock.monotonic
    )
    return outcome, source


@pytest.mark.parametrize("shadow", [False, True], ids=["weighted", "shadow"])
def test_healthy_canary_is_promoted(
    registry: Registry, champion: int, clock: ManualClock, shadow: bool
) -> None:
    policy = POLICY.model_copy(update={"shadow": shadow})
    script = canary_script([AT_50, AT_100], watch=[AT_100])
    outcome, source = _release(registry, script, clock, policy, tag="healthy retrain")
    assert outcome.status == "promoted", outcome.reason
    aliases = registry.catalog.aliases(MODEL)
    assert aliases.get("champion") == CANDIDATE
    assert "canary" not in aliases and "release-lock" not in aliases
    assert [s.weight for s in outcome.steps if s.analysis.verdict == "success"][:2] == [50, 100]
    assert [s.phase for s in outcome.steps] == ["canary", "canary", "watch"]
    assert [s.elapsed_s for s in outcome.steps] == [INTERVAL] * 3  # exact, on the manual clock
    assert source.remaining == 0
    kinds = [e.kind for e in registry.catalog.events(MODEL)]
    assert kinds.count("canary.step") == len(outcome.steps)
    assert "canary.promoted" in kinds and "release.released" in kinds
    assert registry.catalog.get_model_version(MODEL, CANDIDATE).status == "champion"
    assert registry.catalog.get_model_version(MODEL, champion).status == "retired"
    # What the server was told: each step's weight (mirrored only, in shadow mode), then 0%.
    weights = [
        (e.payload["weight"], e.payload["shadow"])
        for e in registry.catalog.events(MODEL, kinds=["canary.weight"])
    ]
    assert weights == [(50.0, shadow), (100.0, shadow), (0.0, False)]


FAULTS: dict[str, tuple[ScriptEntry, str]] = {
    "5pct-errors": ({**AT_50, CANDIDATE: window_counters(100, errors=5)}, "error_rate"),
    "plus-200ms": ({**AT_50, CANDIDATE: window_counters(100, latency_s=0.204)}, "p95_latency_s"),
    "shifted-predictions": (
        {**AT_50, CANDIDATE: window_counters(100, prediction=0.7)},
        "prediction_shift",
    ),
    "crash-on-predict": ({**AT_50, CANDIDATE: window_counters(100, errors=100)}, "error_rate"),
    "fails-to-load": (
        Reading(traffic={CHAMPION: window_counters(200)}, load_errors={CANDIDATE: "bad digest"}),
        "canary failed to load on the server: bad digest",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_is_rolled_back_within_budget(
    registry: Registry, champion: int, clock: ManualClock, fault: str
) -> None:
    window, reason = FAULTS[fault]
    script = canary_script([window, AT_100], watch=[AT_100])
    outcome, source = _release(registry, script, clock, tag="faulty")
    assert outcome.status == "aborted", [s.row() for s in outcome.steps]
    assert outcome.reason.startswith(reason), outcome.reason
    # Traffic reached the canary once step 1 was published (the settle read); the canary was
    # gone one window later.
    exposed_at, done = source.read_at[1], outcome.ended_at
    assert done is not None and done - exposed_at <= 2 * INTERVAL
    assert source.calls == 3  # start, settle, the failing window: nothing read after it
    assert len(outcome.steps) == 1 and outcome.steps[-1].analysis.verdict == "failure"
    assert registry.catalog.get_alias(MODEL, "champion") == champion
    assert registry.catalog.get_alias(MODEL, "canary") is None
    assert registry.catalog.get_alias(MODEL, "release-lock") is None
    assert registry.catalog.get_model_version(MODEL, CANDIDATE).status == "rejected"
    assert [e.kind for e in registry.catalog.events(MODEL, kinds=["canary.aborted"])]


def test_watch_window_rolls_back_a_champion_that_degrades_after_promotion(
    registry: Registry, champion: int, clock: ManualClock
) -> None:
    policy = POLICY.model_copy(update={"watch_windows": 3})
    degraded = {CANDIDATE: window_counters(200, errors=40)}  # 20% errors once promoted
    script = canary_script([AT_50, AT_100], watch=[AT_100, degraded, AT_100])
    outcome, source = _release(registry, script, clock, policy, tag="degrades later")
    assert outcome.status == "rolled_back", [s.row() for s in outcome.steps]
    assert outcome.reason.startswith("watch window")
    assert "error_rate" in outcome.reason
    assert [s.phase for s in outcome.steps] == ["canary", "canary", "watch", "watch"]
    assert source.remaining == 1  # the third watch window never came
    assert registry.catalog.get_alias(MODEL, "champion") == champion
    assert registry.catalog.get_model_version(MODEL, CANDIDATE).status == "rejected"
    assert registry.catalog.events(MODEL, kinds=["model.rolled_back"])


def test_a_step_without_enough_traffic_is_aborted_after_the_inconclusive_limit(
    registry: Registry, champion: int, clock: ManualClock
) -> None:
    trickle = {CHAMPION: window_counters(100), CANDIDATE: window_counters(3)}
    limit = POLICY.inconclusive_limit
    script: list[ScriptEntry] = [Reading(), Reading(), *[trickle] * (limit + 1)]
    outcome, source = _release(registry, script, clock, tag="starved")
    assert outcome.status == "aborted"
    assert outcome.reason == (
        f"step 1 stayed inconclusive for {limit + 1} windows "
        f"(canary saw 3 requests, needs {POLICY.min_requests})"
    )
    assert clock.sleeps == [INTERVAL] * (limit + 1) and source.remaining == 0
    assert registry.catalog.get_model_version(MODEL, CANDIDATE).status == "rejected"


def test_each_step_is_judged_from_when_the_server_applies_it(
    registry: Registry, champion: int, clock: ManualClock
) -> None:
    def routed(canary: int | None, weight: float) -> dict[str, object]:
        return {"champion": CHAMPION, "canary": canary, "weight": weight, "shadow": False}

    policy = POLICY.model_copy(update={"watch_windows": 0})
    script: list[ScriptEntry] = [
        Reading(routing=routed(None, 0.0)),  # the release starts
        Reading(routing=routed(None, 0.0)),  # step 1 published, not applied yet
        Reading(routing=routed(None, 0.0)),
        Reading(routing=routed(CANDIDATE, 50.0)),  # applied: the window starts here
        Reading(traffic=AT_50, routing=routed(CANDIDATE, 50.0)),
        Reading(routing=routed(CANDIDATE, 100.0)),  # step 2 applied at once
        Reading(traffic=AT_100, routing=routed(CANDIDATE, 100.0)),
    ]
    outcome, source = _release(registry, script, clock, policy, tag="slow to apply")
    assert outcome.status == "promoted", outcome.reason
    assert source.remaining == 0
    # Polled every 50 ms until applied, then one full interval per window.
    assert clock.sleeps == [0.05, 0.05, INTERVAL, INTERVAL]
    assert [s.elapsed_s for s in outcome.steps] == [INTERVAL, INTERVAL]


# -- on a live server, with real traffic (real time) ---------------------------------------------
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


@pytest.mark.realtime
@pytest.mark.parametrize("shadow", [False, True], ids=["weighted", "shadow"])
def test_live_healthy_canary_is_promoted(
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


@pytest.mark.realtime
def test_live_slow_canary_is_rolled_back_within_budget(
    registry: Registry,
    live: RunningServer,
    faults: FaultInjector,
    traffic: Callable[[], TrafficReport],
) -> None:
    candidate = register_test_bundle(registry, MODEL, seed=0, tag="faulty")
    faults.set(MODEL, candidate, FaultSpec(extra_latency_s=0.2))
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
