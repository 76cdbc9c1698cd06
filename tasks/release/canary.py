"""Canary release: step a candidate through traffic weights, analyse each step, promote or abort.

Every change goes through the registry (compare-and-swap on aliases, the event log), so the
model server follows it within a poll interval. A release holds the model's release lock for
its whole life; whatever ends it early (a failed analysis, an exception, a cancel) clears the
canary in ``finally``, and ``repair_releases`` covers a process that died outright. This
module starts and settles a release; ``tasks.release.canary_run`` steps, judges and watches it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from registry.errors import ConfigError
from registry.release import CANARY_ALIAS, CHAMPION_ALIAS, acquire_release_lock, repair_releases
from tasks.release.canary_run import CanaryRun, Unjudgeable
from tasks.release.metric_sources import MetricsSource
from tasks.release.policy import CanaryOutcome, CanaryPolicy, StepRecord

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["run_canary"]


def run_canary(
    registry: Registry,
    model: str,
    version: int,
    policy: CanaryPolicy,
    metrics: MetricsSource,
    *,
    actor: str = "canary",
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_step: Callable[[StepRecord], None] | None = None,
) -> CanaryOutcome:
    """Release ``model`` ``version`` through ``policy.steps``; promote it or abort it.

    Raises ``ReleaseLockedError`` when another release of the model is running. With no
    champion yet, the version is promoted directly (nothing to compare it with).
    ``on_step`` sees every analysis window as it is recorded (CLI progress).
    ``sleep`` waits between snapshots and ``clock`` measures windows; ``clock`` must be the
    timeline the source stamps ``MetricsSnapshot.taken_at`` on (``time.monotonic`` for the
    real sources; ``retrain.testing.ManualClock`` with a ``ScriptedMetricsSource`` in tests).
    """
    catalog = registry.catalog
    repair_releases(catalog, [model], actor=actor)
    catalog.get_model_version(model, version)  # NotFoundError names a missing version
    champion = catalog.get_alias(model, CHAMPION_ALIAS)
    if champion == version:
        raise ConfigError(f"{model} v{version} is already the champion; nothing to release")
    outcome = CanaryOutcome(model, version, champion, started_at=clock())
    release = CanaryRun(registry, outcome, policy, metrics, actor, sleep, clock, on_step)
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
        try:
            passed = release.run_steps()
        except Unjudgeable as exc:  # cannot judge the canary, so it does not stay
            outcome.reason, passed = str(exc), False
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
            outcome.ended_at = clock()
