"""One canary release while it runs: traffic steps, analysis windows, promotion or abort,
and the watch after promotion.

``tasks.release.canary.run_canary`` takes the release lock, drives a ``CanaryRun`` and makes
sure that whatever ends it early clears the canary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from registry.champions import freeze_holdout
from registry.errors import MetricsUnavailableError
from registry.release import (
    CANARY_ALIAS,
    CHAMPION_ALIAS,
    ReleaseLease,
    clear_canary,
    publish_weight,
)
from tasks.release.analysis import StepAnalysis, analyse_window
from tasks.release.metric_sources import MetricsSnapshot, MetricsSource, VersionCounters
from tasks.release.policy import CanaryOutcome, CanaryPolicy, StepRecord
from tasks.release.rollback import rollback
from tasks.reporting.artifacts import ProgressReporter, artifact_key, publish_table

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["CanaryRun", "Unjudgeable"]


class Unjudgeable(Exception):
    """The metrics source stayed unreadable past the policy's ``error_limit``."""


class CanaryRun:
    """One running release: its registry handles, outcome and artifacts."""

    lease: ReleaseLease  # taken by run_canary right after construction
    baseline: VersionCounters = VersionCounters()  # the champion's counters over the steps

    def __init__(
        self,
        registry: Registry,
        outcome: CanaryOutcome,
        policy: CanaryPolicy,
        metrics: MetricsSource,
        actor: str,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        on_step: Callable[[StepRecord], None] | None = None,
    ) -> None:
        self.on_step = on_step
        self.registry, self.catalog = registry, registry.catalog
        self.outcome, self.policy, self.metrics = outcome, policy, metrics
        self.actor, self.sleep, self.clock = actor, sleep, clock
        self.model, self.version = outcome.model, outcome.version
        self.champion = outcome.previous_champion
        self.key = artifact_key("canary", self.model)
        self.progress = ProgressReporter(
            artifact_key("canary-progress", self.model), f"canary of {self.model} v{self.version}"
        )

    def snapshot(self) -> MetricsSnapshot:
        """Counters now; unreadable metrics are retried ``error_limit`` times, then judged."""
        errors = 0
        while True:
            try:
                return self.metrics.snapshot(self.model)
            except MetricsUnavailableError as exc:
                errors += 1
                if errors > self.policy.error_limit:
                    raise Unjudgeable(
                        f"metrics unavailable {errors} times in a row: {exc}"
                    ) from exc
                self.sleep(min(self.policy.interval_s, 1.0))

    def wait_applied(self, weight: float) -> MetricsSnapshot:
        """Wait until the server routes ``weight`` to the canary (sources that can tell, for at
        most ``settle_timeout_s``); the last snapshot, where the step's first window begins."""
        deadline = self.clock() + self.policy.settle_timeout_s
        while True:
            snapshot = self.snapshot()
            routing = snapshot.routing
            applied = routing is None or (
                routing.get("canary") == self.version and abs(routing["weight"] - weight) < 1e-6
            )
            if applied or self.clock() >= deadline:
                return snapshot
            self.sleep(min(0.05, self.policy.interval_s / 4))

    def measure(
        self, start: MetricsSnapshot, before: MetricsSnapshot, step: int, weight: float
    ) -> tuple[StepRecord, MetricsSnapshot]:
        """One window from ``before``: wait an interval, snapshot, judge; windows abut."""
        self.sleep(max(0.0, self.policy.interval_s - (self.clock() - before.taken_at)))
        after = self.snapshot()
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
        start = self.snapshot()
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
            before = self.wait_applied(weight)
            inconclusive = 0
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
        self.baseline = before.since(start, self.champion or 0)  # the last window's end
        return True

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
        # Challengers of the new champion are graded on its holdout from now on.
        freeze_holdout(self.registry.catalog, self.model, self.version, by="canary")
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
        if not self.policy.watch_windows:
            return
        try:
            before = self.snapshot()
            for window in range(1, self.policy.watch_windows + 1):
                self.lease.renew()
                self.sleep(max(0.0, self.policy.interval_s - (self.clock() - before.taken_at)))
                after = self.snapshot()
                analysis = analyse_window(
                    after.since(before, self.version),
                    self.baseline,
                    limits,
                    min_requests=self.policy.min_requests,
                )
                elapsed = after.taken_at - before.taken_at
                before = after
                self.record(StepRecord(window, 100.0, analysis, elapsed, phase="watch"))
                if analysis.verdict == "failure" and previous is not None:
                    reason = "watch window: " + "; ".join(analysis.reasons)
                    rollback(
                        self.registry, self.model, previous, reason=reason,
                        actor=self.actor,
                    )  # fmt: skip
                    self.outcome.status = "rolled_back"
                    self.outcome.reason = reason
                    return
        except Unjudgeable as exc:  # promoted stays promoted; say the watch was cut short
            self.outcome.reason += f"; watch ended early: {exc}"
