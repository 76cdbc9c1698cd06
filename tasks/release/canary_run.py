"""One canary release while it runs: traffic steps, analysis windows, promotion or abort,
and the watch after promotion.

``tasks.release.canary.run_canary`` takes the release lock, drives a ``CanaryRun`` and makes
sure that whatever ends it early clears the canary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
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

__all__ = ["CanaryRun", "NotReleasable", "Unjudgeable", "promote_version"]


class Unjudgeable(Exception):
    """The metrics source stayed unreadable past the policy's ``error_limit``."""


class NotReleasable(Exception):
    """The server cannot take the canary at all (it reports that the version fails to load)
    before any traffic was judged: the release stops, the candidate is not at fault."""


class CanaryRun:
    """One running release: its registry handles, outcome and artifacts."""

    lease: ReleaseLease  # taken by run_canary right after construction
    # The champion's counters over the judged windows. Summed window by window, so a server
    # restart or a failed scrape (a window that cannot be measured) leaves it whole.
    baseline: VersionCounters = VersionCounters()

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
        self.seen: set[int] = set()  # versions a snapshot of this release has reported
        self.key = artifact_key("canary", self.model)
        self.progress = ProgressReporter(
            artifact_key("canary-progress", self.model), f"canary of {self.model} v{self.version}"
        )

    def snapshot(self) -> MetricsSnapshot:
        """Counters now; unreadable metrics are retried ``error_limit`` times, then judged."""
        errors = 0
        while True:
            try:
                return self._gaps_marked(self.metrics.snapshot(self.model))
            except MetricsUnavailableError as exc:
                errors += 1
                if errors > self.policy.error_limit:
                    raise Unjudgeable(
                        f"metrics unavailable {errors} times in a row: {exc}"
                    ) from exc
                self.sleep(min(self.policy.interval_s, 1.0))

    def _gaps_marked(self, snapshot: MetricsSnapshot) -> MetricsSnapshot:
        """``snapshot`` with a version reported before but absent now marked incomplete: a
        scrape that missed a series must not read as "no traffic yet" (which would fold the
        missed counts into the next window), so both windows around it go unjudged."""
        ours = {v for v in (self.version, self.champion) if v is not None}
        missing = (self.seen & ours) - snapshot.versions.keys()
        self.seen |= ours & snapshot.versions.keys()
        if not missing:
            return snapshot
        gaps = {
            v: VersionCounters(incomplete=f"v{v}'s series missing from a snapshot (failed scrape?)")
            for v in missing
        }
        return replace(snapshot, versions={**snapshot.versions, **gaps})

    def wait_applied(self, weight: float) -> MetricsSnapshot:
        """Wait until the server routes ``weight`` to the canary (sources that can tell, for at
        most ``settle_timeout_s``); the last snapshot, where the step's first window begins."""
        deadline = self.clock() + self.policy.settle_timeout_s
        while True:
            snapshot = self.snapshot()
            load_error = snapshot.load_errors.get(self.version)
            if load_error and not self.outcome.steps:  # nothing judged yet: abort at once
                raise NotReleasable(
                    f"the model server cannot load {self.model} v{self.version}: {load_error}"
                )
            routing = snapshot.routing
            applied = routing is None or (
                routing.get("canary") == self.version and abs(routing["weight"] - weight) < 1e-6
            )
            if applied or self.clock() >= deadline:
                return snapshot
            self.sleep(min(0.05, self.policy.interval_s / 4))

    def measure(
        self, before: MetricsSnapshot, step: int, weight: float
    ) -> tuple[StepRecord, MetricsSnapshot]:
        """One window from ``before``: wait an interval, snapshot, judge; windows abut."""
        self.sleep(max(0.0, self.policy.interval_s - (self.clock() - before.taken_at)))
        after = self.snapshot()
        assert self.champion is not None
        champion = after.since(before, self.champion)
        if champion.incomplete is None:
            self.baseline = self.baseline + champion
        analysis = analyse_window(
            after.since(before, self.version),
            champion,
            self.policy.limits,
            min_requests=self.policy.min_requests,
            champion_baseline=self.baseline,
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
        self.snapshot()  # unreadable metrics stop the release here, before any traffic moves
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
            inconclusive = passed = 0
            while True:
                self.lease.renew()
                record, before = self.measure(before, number, weight)
                verdict = record.analysis.verdict
                if verdict == "success":
                    passed += 1
                    if passed >= self.policy.windows_per_step:
                        break
                    continue
                if verdict == "failure":
                    failures += 1
                    if failures > self.policy.failure_limit:
                        self.outcome.reason = "; ".join(record.analysis.reasons)
                        return False
                else:
                    inconclusive += 1
                    if inconclusive > self.policy.inconclusive_limit:
                        self.outcome.reason = _stayed_inconclusive(
                            number, inconclusive, record, self.policy.min_requests
                        )
                        return False
            self.progress.update(number / len(steps))
        return True

    def promote(self, reason: str | None = None) -> None:
        """Champion := canary by compare-and-swap, then clear the canary."""
        promote_version(self.registry, self.outcome, reason or self.passed_reason(), self.actor)

    def passed_reason(self) -> str:
        """What the candidate passed, in the words of its mode."""
        if self.outcome.mode == "shadow":
            return f"shadow passed {self.policy.windows_per_step} windows on mirrored traffic"
        return f"canary passed {len(self.policy.steps)} steps"

    def withdraw(self, reason: str) -> None:
        """Canary out, champion at 100%, candidate left a candidate: the release could not
        run (``NotReleasable``), which says nothing against the candidate."""
        clear_canary(self.catalog, self.model, reason=f"not released: {reason}", actor=self.actor)
        self.outcome.status = "not_released"
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


def promote_version(registry: Registry, outcome: CanaryOutcome, reason: str, actor: str) -> None:
    """Make ``outcome.version`` champion by compare-and-swap on ``outcome.previous_champion``
    (held by the caller's release lock), clear any canary, update both statuses, move the
    grading holdout with the champion and append ``canary.promoted``; ``outcome`` says so."""
    catalog, model, version = registry.catalog, outcome.model, outcome.version
    previous = outcome.previous_champion
    catalog.set_alias(model, CHAMPION_ALIAS, version, expected=previous, reason=reason, actor=actor)
    clear_canary(catalog, model, reason=reason, actor=actor)
    catalog.set_status(model, version, "champion", reason=reason, actor=actor)
    if previous is not None:
        catalog.set_status(
            model, previous, "retired", reason=f"replaced by v{version}", actor=actor
        )
    # Challengers of the new champion are graded on its holdout from now on.
    freeze_holdout(catalog, model, version, by=outcome.mode)
    catalog.append_event(
        "canary.promoted",
        model=model,
        versions=[v for v in (previous, version) if v is not None],
        reason=reason,
        actor=actor,
        payload={
            "from": previous,
            "to": version,
            "steps": len(outcome.steps),
            "mode": outcome.mode,
        },
    )
    outcome.status = "promoted"
    outcome.reason = reason


def _stayed_inconclusive(step: int, windows: int, record: StepRecord, min_requests: int) -> str:
    """Why a step gave up: too little traffic, or metrics that could not be measured."""
    unmeasured = [c.detail for c in record.analysis.checks if c.name == "metrics"]
    why = (
        f"metrics could not be measured: {unmeasured[0]}"
        if unmeasured
        else f"canary saw {record.analysis.canary_requests} requests, needs {min_requests}"
    )
    return f"step {step} stayed inconclusive for {windows} windows ({why})"
