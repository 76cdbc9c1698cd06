"""Canary release: step a candidate through traffic weights, analyse each step, promote or abort.

Every change goes through the registry (compare-and-swap on aliases, the event log), so the
model server follows it within a poll interval. A release holds the model's release lock for
its whole life; whatever ends it early (a failed analysis, an exception, a cancel) clears the
canary in ``finally``, and ``repair_releases`` covers a process that died outright.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from registry.errors import ConfigError
from serving.release_state import (
    CANARY_ALIAS,
    CHAMPION_ALIAS,
    acquire_release_lock,
    clear_canary,
    publish_weight,
    repair_releases,
)
from tasks.artifacts import ProgressReporter, artifact_key, publish_table
from tasks.canary_analysis import CanaryLimits, StepAnalysis, analyse_window
from tasks.canary_sources import MetricsSnapshot, MetricsSource, VersionCounters
from tasks.rollback import RollbackResult, rollback

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = [
    "CanaryOutcome",
    "CanaryPolicy",
    "RollbackResult",
    "StepRecord",
    "repair_releases",
    "rollback",
    "run_canary",
]


class CanaryPolicy(BaseModel):
    """How a candidate meets traffic: weights, analysis cadence, limits, tolerance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[float] = Field(
        default_factory=lambda: [10.0, 25.0, 50.0, 100.0],
        description="Canary traffic percentages, increasing, each in (0, 100].",
    )
    interval_s: float = Field(default=30.0, gt=0, description="One analysis window.")
    min_requests: int = Field(
        default=50, ge=1, description="Canary requests a window needs to judge."
    )
    limits: CanaryLimits = Field(default_factory=CanaryLimits)
    failure_limit: int = Field(
        default=0, ge=0, description="Failed windows tolerated before abort."
    )
    inconclusive_limit: int = Field(
        default=3, ge=0, description="Inconclusive windows tolerated per step before abort."
    )
    watch_windows: int = Field(
        default=2, ge=0, description="Windows watched after promotion that can still roll back."
    )
    shadow: bool = Field(default=False, description="Score the canary on mirrored traffic only.")
    settle_timeout_s: float = Field(
        default=5.0, ge=0, description="Wait at most this long for the server to apply a step."
    )
    lease_ttl_s: float | None = Field(
        default=None, gt=0, description="Release lease; default max(60 s, 4 intervals)."
    )

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[float]) -> list[float]:
        if not steps or any(not 0 < s <= 100 for s in steps):
            raise ValueError("steps must be percentages in (0, 100]")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("steps must increase")
        return steps

    def lease_ttl(self) -> float:
        """Seconds a release lease lasts without renewal."""
        return self.lease_ttl_s or max(60.0, 4 * self.interval_s)


@dataclass(frozen=True)
class StepRecord:
    """One analysis window of a release."""

    step: int
    weight: float
    analysis: StepAnalysis
    elapsed_s: float
    phase: Literal["canary", "watch"] = "canary"  # watch: after promotion, can still roll back

    def row(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "step": self.step,
            "weight": self.weight,
            **self.analysis.row(),
        }


@dataclass
class CanaryOutcome:
    """How a release ended: ``promoted``, ``aborted`` (champion never changed) or
    ``rolled_back`` (promoted, then the watch window moved the champion back)."""

    model: str
    version: int
    previous_champion: int | None
    status: Literal["promoted", "aborted", "rolled_back"] = "aborted"
    reason: str = ""
    steps: list[StepRecord] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None

    @property
    def promoted(self) -> bool:
        return self.status == "promoted"


class _Release:
    """One running release: its registry handles, outcome and artifacts."""

    def __init__(
        self,
        registry: Registry,
        outcome: CanaryOutcome,
        policy: CanaryPolicy,
        metrics: MetricsSource,
        actor: str,
        sleep: Callable[[float], None],
        on_step: Callable[[StepRecord], None] | None = None,
    ) -> None:
        self.on_step = on_step
        self.catalog = registry.catalog
        self.outcome, self.policy, self.metrics = outcome, policy, metrics
        self.actor, self.sleep = actor, sleep
        self.model, self.version = outcome.model, outcome.version
        self.champion = outcome.previous_champion
        self.key = artifact_key("canary", self.model)
        self.progress = ProgressReporter(
            artifact_key("canary-progress", self.model), f"canary of {self.model} v{self.version}"
        )

    def wait_applied(self, weight: float) -> None:
        """Wait until the server routes ``weight`` to the canary (sources that can tell)."""
        deadline = time.monotonic() + self.policy.settle_timeout_s
        while time.monotonic() < deadline:
            routing = self.metrics.snapshot(self.model).routing
            if routing is None:
                return
            if routing.get("canary") == self.version and abs(routing["weight"] - weight) < 1e-6:
                return
            self.sleep(min(0.05, self.policy.interval_s / 4))

    def measure(
        self, start: MetricsSnapshot, before: MetricsSnapshot, step: int, weight: float
    ) -> tuple[StepRecord, MetricsSnapshot]:
        """One window from ``before``: wait an interval, snapshot, judge; windows abut."""
        began = time.monotonic()
        self.sleep(max(0.0, self.policy.interval_s - (began - before.taken_at)))
        after = self.metrics.snapshot(self.model)
        assert self.champion is not None
        analysis = analyse_window(
            after.since(before, self.version),
            after.since(before, self.champion),
            self.policy.limits,
            min_requests=self.policy.min_requests,
            champion_baseline=after.since(start, self.champion),
        )
        if self.version in after.load_errors:
            reason = f"canary failed to load on the server: {after.load_errors[self.version]}"
            analysis = StepAnalysis("failure", analysis.checks, 0, 0, [reason])
        elif self.catalog.get_alias(self.model, CANARY_ALIAS) != self.version:
            analysis = StepAnalysis("failure", [], 0, 0, ["canary alias changed outside"])
        record = StepRecord(step, weight, analysis, after.taken_at - before.taken_at)
        self.record(record)
        return record, after

    def record(self, record: StepRecord) -> None:
        self.outcome.steps.append(record)
        if self.on_step is not None:
            self.on_step(record)
        self.catalog.append_event(
            "canary.step",
            model=self.model,
            versions=[v for v in (self.champion, self.version) if v is not None],
            reason="; ".join(record.analysis.reasons) or record.analysis.verdict,
            actor=self.actor,
            payload=record.row(),
        )
        publish_table(
            self.key,
            [s.row() for s in self.outcome.steps],
            f"canary analysis of {self.model} v{self.version}",
        )

    def run_steps(self) -> bool:
        """All steps; True when the canary passed every one."""
        start = self.metrics.snapshot(self.model)
        failures = 0
        steps = self.policy.steps
        for number, weight in enumerate(steps, start=1):
            publish_weight(
                self.catalog,
                self.model,
                self.version,
                weight,
                shadow=self.policy.shadow,
                actor=self.actor,
                reason=f"canary step {number}/{len(steps)}: {weight:g}%",
            )
            self.wait_applied(weight)
            inconclusive = 0
            before = self.metrics.snapshot(self.model)
            while True:
                self.lease.renew()
                record, before = self.measure(start, before, number, weight)
                verdict = record.analysis.verdict
                if verdict == "success":
                    break
                if verdict == "failure":
                    failures += 1
                    if failures > self.policy.failure_limit:
                        self.outcome.reason = "; ".join(record.analysis.reasons)
                        return False
                else:
                    inconclusive += 1
                    if inconclusive > self.policy.inconclusive_limit:
                        self.outcome.reason = (
                            f"step {number} stayed inconclusive for {inconclusive} windows "
                            f"(canary saw {record.analysis.canary_requests} requests, "
                            f"needs {self.policy.min_requests})"
                        )
                        return False
            self.progress.update(number / len(steps))
        self.baseline = self.metrics.snapshot(self.model).since(start, self.champion or 0)
        return True

    lease: Any
    baseline: VersionCounters = VersionCounters()

    def promote(self) -> None:
        """Champion := canary by compare-and-swap, then clear the canary."""
        reason = f"canary passed {len(self.policy.steps)} steps"
        self.catalog.set_alias(
            self.model,
            CHAMPION_ALIAS,
            self.version,
            expected=self.champion,
            reason=reason,
            actor=self.actor,
        )
        clear_canary(self.catalog, self.model, reason=reason, actor=self.actor)
        self.catalog.set_status(
            self.model, self.version, "champion", reason=reason, actor=self.actor
        )
        if self.champion is not None:
            self.catalog.set_status(
                self.model, self.champion, "retired", reason=f"replaced by v{self.version}",
                actor=self.actor,
            )  # fmt: skip
        self.catalog.append_event(
            "canary.promoted",
            model=self.model,
            versions=[v for v in (self.champion, self.version) if v is not None],
            reason=reason,
            actor=self.actor,
            payload={"from": self.champion, "to": self.version, "steps": len(self.outcome.steps)},
        )
        self.outcome.status = "promoted"
        self.outcome.reason = reason

    def abort(self, reason: str) -> None:
        """Canary out, champion at 100%, candidate rejected."""
        clear_canary(self.catalog, self.model, reason=f"canary aborted: {reason}", actor=self.actor)
        self.catalog.append_event(
            "canary.aborted",
            model=self.model,
            versions=[v for v in (self.champion, self.version) if v is not None],
            reason=reason,
            actor=self.actor,
            payload={"steps": [s.row() for s in self.outcome.steps]},
        )
        self.catalog.set_status(
            self.model, self.version, "rejected", reason=f"canary aborted: {reason}",
            actor=self.actor,
        )  # fmt: skip
        self.outcome.status = "aborted"
        self.outcome.reason = reason

    def watch(self) -> None:
        """After promotion: the new champion must keep within limits, else roll back."""
        limits, previous = self.policy.limits, self.champion
        for window in range(1, self.policy.watch_windows + 1):
            self.lease.renew()
            before = self.metrics.snapshot(self.model)
            self.sleep(self.policy.interval_s)
            now = self.metrics.snapshot(self.model).since(before, self.version)
            analysis = analyse_window(
                now, self.baseline, limits, min_requests=self.policy.min_requests
            )
            elapsed = self.policy.interval_s
            self.record(StepRecord(window, 100.0, analysis, elapsed, phase="watch"))
            if analysis.verdict == "failure" and previous is not None:
                reason = "watch window: " + "; ".join(analysis.reasons)
                rollback(
                    _RegistryView(self.catalog), self.model, previous, reason=reason,
                    actor=self.actor,
                )  # fmt: skip
                self.outcome.status = "rolled_back"
                self.outcome.reason = reason
                return


@dataclass
class _RegistryView:
    """Just the catalog, for ``rollback`` (which needs nothing else)."""

    catalog: Any


def run_canary(
    registry: Registry,
    model: str,
    version: int,
    policy: CanaryPolicy,
    metrics: MetricsSource,
    *,
    actor: str = "canary",
    sleep: Callable[[float], None] = time.sleep,
    on_step: Callable[[StepRecord], None] | None = None,
) -> CanaryOutcome:
    """Release ``model`` ``version`` through ``policy.steps``; promote it or abort it.

    Raises ``ReleaseLockedError`` when another release of the model is running. With no
    champion yet, the version is promoted directly (nothing to compare it with).
    ``on_step`` sees every analysis window as it is recorded (CLI progress).
    """
    catalog = registry.catalog
    repair_releases(catalog, [model], actor=actor)
    catalog.get_model_version(model, version)  # NotFoundError names a missing version
    champion = catalog.get_alias(model, CHAMPION_ALIAS)
    if champion == version:
        raise ConfigError(f"{model} v{version} is already the champion; nothing to release")
    outcome = CanaryOutcome(model, version, champion)
    release = _Release(registry, outcome, policy, metrics, actor, sleep, on_step)
    release.lease = acquire_release_lock(
        catalog, model, version, ttl_s=policy.lease_ttl(), actor=actor
    )
    settled = False
    try:
        if champion is None:
            release.promote()
            settled = True
            return outcome
        catalog.set_alias(
            model, CANARY_ALIAS, version, expected=None, reason="canary started", actor=actor
        )
        passed = release.run_steps()
        if not passed:
            release.abort(outcome.reason)
            settled = True
            return outcome
        release.promote()
        settled = True
        release.watch()
        return outcome
    finally:
        try:
            if not settled:  # an exception, a cancel, a crash of the analysis: no half release
                release.abort("release interrupted before it finished")
        finally:
            release.lease.release()
            outcome.ended_at = time.monotonic()
