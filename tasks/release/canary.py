"""Canary release: step a candidate through traffic weights, analyse each step, promote or abort.

Every change goes through the registry (compare-and-swap on aliases, the event log), so the
model server follows it within a poll interval. A release holds the model's release lock for
its whole life; whatever ends it early (a failed analysis, an exception, a cancel) clears the
canary in ``finally``, and ``repair_releases`` covers a process that died outright. This
module starts and settles a release (and promotes without one, for release mode ``gate``);
``tasks.release.canary_run`` steps, judges and watches it; ``tasks.release.preflight`` checks
the model server before the first step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from registry.errors import ConfigError
from registry.release import CANARY_ALIAS, CHAMPION_ALIAS, acquire_release_lock, repair_releases
from tasks.release.canary_run import CanaryRun, NotReleasable, Unjudgeable, promote_version
from tasks.release.metric_sources import MetricsSource
from tasks.release.policy import CanaryOutcome, CanaryPolicy, StepRecord
from tasks.release.preflight import ServerProbe, check_server

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["promote_at_gate", "run_canary"]


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
    server: ServerProbe | None = None,
    mode: str = "canary",
) -> CanaryOutcome:
    """Release ``model`` ``version`` through ``policy.steps``; promote it or abort it.

    Raises ``ReleaseLockedError`` when another release of the model is running. With no
    champion yet, the version is promoted directly (nothing to compare it with). With a
    ``server``, the release first checks that it is the right one
    (``tasks.release.preflight.check_server``) and ends ``not_released`` at once if not;
    so does a server that reports the version fails to load before any window was judged.
    ``on_step`` sees every analysis window as it is recorded (CLI progress); ``mode`` names
    the release mode in the outcome (``canary`` or ``shadow``).
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
    outcome = CanaryOutcome(model, version, champion, started_at=clock(), mode=mode)
    if champion is not None and server is not None:
        refusal = check_server(server, catalog, model, version, champion)
        if refusal is not None:  # before the lock and the alias: nothing to undo
            outcome.status, outcome.reason, outcome.ended_at = "not_released", refusal, clock()
            return outcome
    release = CanaryRun(registry, outcome, policy, metrics, actor, sleep, clock, on_step)
    release.lease = acquire_release_lock(
        catalog, model, version, ttl_s=policy.lease_ttl(), actor=actor
    )
    try:
        _drive(release, champion)
        return outcome
    finally:
        release.lease.release()
        outcome.ended_at = clock()


def _drive(release: CanaryRun, champion: int | None) -> None:
    """Run a locked release to its end; whatever stops it early leaves no canary behind."""
    outcome, actor = release.outcome, release.actor
    settled = False
    try:
        if champion is None:
            release.promote("first model: no champion to compare with")
            settled = True
            return
        release.catalog.set_alias(
            outcome.model, CANARY_ALIAS, outcome.version, expected=None,
            reason="canary started", actor=actor,
        )  # fmt: skip
        try:
            passed = release.run_steps()
        except Unjudgeable as exc:  # cannot judge the canary, so it does not stay
            outcome.reason, passed = str(exc), False
        except NotReleasable as exc:  # the server cannot take it: not the candidate's fault
            release.withdraw(str(exc))
            settled = True
            return
        if not passed:
            release.abort(outcome.reason)
            settled = True
            return
        release.promote()
        settled = True
        release.watch()
    finally:
        if not settled:  # an exception, a cancel, a crash of the analysis: no half release
            release.abort("release interrupted before it finished")


def promote_at_gate(
    registry: Registry, model: str, version: int, *, reason: str, actor: str = "release"
) -> CanaryOutcome:
    """Promote ``model`` ``version`` with no canary (release mode ``gate``: batch scoring, no
    model server): under the release lock, champion by compare-and-swap, statuses, the
    champion's holdout, the ``canary.promoted`` event; ``reason`` says why it may."""
    catalog = registry.catalog
    catalog.get_model_version(model, version)  # NotFoundError names a missing version
    champion = catalog.get_alias(model, CHAMPION_ALIAS)
    if champion == version:
        raise ConfigError(f"{model} v{version} is already the champion; nothing to release")
    outcome = CanaryOutcome(model, version, champion, mode="gate")
    lease = acquire_release_lock(catalog, model, version, ttl_s=60.0, actor=actor)
    try:
        promote_version(registry, outcome, reason, actor)
        return outcome
    finally:
        lease.release()
        outcome.ended_at = time.monotonic()
