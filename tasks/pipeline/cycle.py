"""One turn of the loop, as the flows take it: a trigger asks, the one decision answers, the
retrain runs; the drift check compares recent data with the champion's and asks in turn.

``retrain_when_due`` is the body of the ``retrain-model`` flow and ``check_drift`` the body of
``monitor-drift``, without Prefect: the flows call them with their Prefect task faces, and
anything that drives the loop on its own clock (a simulation, a soak test, a script) calls
them with the plain steps. One code path, whoever runs it.

A retrain that stops on one of the platform's own errors (its data or spec: a contract that
fails, a source that cannot be read ...) is recorded once, as a ``run.failed`` event naming
the stage, and raised as ``RunFailedError`` whose message is that one line
(``tasks.pipeline.failures``); the flow ends Failed with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from registry.errors import RetrainError, RunFailedError
from registry.redaction import redact_url
from registry.release import repair_releases
from tasks.pipeline.failures import StageTracker, record_failure
from tasks.pipeline.recipe import PLAIN_STEPS, RetrainEnv, RetrainRequest, Steps, run_retrain
from tasks.pipeline.runs import RetrainSummary, champion_reference
from tasks.pipeline.trigger import (
    RETRAIN_SKIPPED,
    RETRAIN_STARTED,
    decide_trigger,
    record_trigger,
)

if TYPE_CHECKING:
    import pandas as pd

    from registry.store import Registry
    from tasks.data.drift import DriftPolicy
    from tasks.pipeline.plan import PipelinePlan

__all__ = ["MonitorResult", "PipelineLike", "check_drift", "retrain_when_due"]


class _Triggers(Protocol):
    @property
    def drift(self) -> bool: ...
    @property
    def cooldown_minutes(self) -> int: ...


class PipelineLike(Protocol):
    """What the loop reads of a pipeline spec (``retrain.config.specs.PipelineSpec``)."""

    @property
    def name(self) -> str: ...
    @property
    def triggers(self) -> _Triggers: ...
    @property
    def drift(self) -> DriftPolicy: ...
    @property
    def plan(self) -> PipelinePlan: ...


def retrain_when_due(
    registry: Registry,
    spec: PipelineLike,
    request: RetrainRequest,
    env: RetrainEnv,
    *,
    now: datetime,
    run_id: str | None,
    steps: Steps = PLAIN_STEPS,
    say: Callable[[str], None] = print,
) -> RetrainSummary:
    """Decide ``request.trigger`` for ``spec``'s model, record the decision, and retrain when
    it says so; a folded trigger returns an ``outcome="skipped"`` summary with the reason.

    ``run_id`` is the asking run (its own ``retrain.requested`` does not fold it); ``say``
    is where the decision is told (the flow's print goes to its Prefect log). A retrain that
    stops on a platform error raises ``RunFailedError`` (one line; the error is its cause)
    after recording its ``run.failed`` event; other exceptions pass through untouched.
    """
    decision = decide_trigger(
        registry,
        spec.name,
        request.trigger,
        cooldown_minutes=spec.triggers.cooldown_minutes,
        drift_triggers=spec.triggers.drift,
        now=now,
        run_id=run_id,
    )
    record_trigger(
        registry,
        RETRAIN_STARTED if decision.start else RETRAIN_SKIPPED,
        spec.name,
        request.trigger,
        now=now,
        run_id=run_id,
        reason=decision.reason,
        actor=env.actor,
    )
    say(f"trigger {request.trigger}: {decision.reason}")
    if not decision.start:
        return RetrainSummary(
            spec.name, request.trigger, outcome="skipped", gate_reasons=(decision.reason,)
        )
    repair_releases(registry.catalog, [spec.name], actor=env.actor)
    summary = _retrain_on_record(registry, spec, request, env, run_id=run_id, steps=steps)
    say(f"retrain of {spec.name} ended: {summary.outcome}")
    return summary


def _retrain_on_record(
    registry: Registry,
    spec: PipelineLike,
    request: RetrainRequest,
    env: RetrainEnv,
    *,
    run_id: str | None,
    steps: Steps,
) -> RetrainSummary:
    """``run_retrain`` with the run's facts in the version's lineage, each step's stage
    tracked, and a platform error recorded once (``run.failed``) and raised as one line."""
    # Which run trained it, why, and on what data: lineage of the version, not of the bundle.
    facts = {"flow_run_id": run_id, "trigger": request.trigger, **env.run.run_info}
    run = replace(env.run, run_info={**facts, "source": redact_url(request.source)})
    tracker = StageTracker()
    try:
        return run_retrain(registry, spec.plan, request, replace(env, run=run), tracker.wrap(steps))
    except RetrainError as exc:
        failure, event_id = record_failure(
            registry,
            spec.name,
            tracker,
            exc,
            run_id=run_id,
            trigger=request.trigger,
            source=request.source,
            actor=env.actor,
        )
        raise RunFailedError(failure.line, stage=failure.stage, event_id=event_id) from exc


@dataclass(frozen=True)
class MonitorResult:
    """What one drift check found and whether it asked for a retrain."""

    model: str
    champion: int | None
    drifted: bool
    drifted_share: float | None = None
    columns: list[str] = field(default_factory=list)
    retrain: str = "not asked"
    event_id: str | None = None

    @property
    def requested(self) -> bool:
        """Whether the check asked for a retrain (the drift trigger was due)."""
        return self.retrain == "requested"


def check_drift(
    registry: Registry,
    spec: PipelineLike,
    current: pd.DataFrame,
    *,
    now: datetime,
    detect: Callable[..., Any] | None = None,
    signal: Callable[..., Any] | None = None,
    publish: bool = True,
    say: Callable[[str], None] = print,
    pii_key: str | None = None,
    pii_applied: bool = False,
) -> MonitorResult:
    """Compare ``current`` with the champion's training data; on drift, ask the one trigger
    decision whether a retrain may start and record ``drift.detected`` (emitting the Prefect
    event ``retrain-on-drift-<model>`` reacts to only when it may, and when ``publish``).

    ``detect``/``signal`` default to the plain drift step and ``signal_drift``; the flow passes
    their Prefect task faces; ``current`` loses its PII columns first (``pii_key`` hashes),
    unless the caller's load already did (``pii_applied``: hashing twice would change them).
    """
    from tasks.data.drift_events import signal_drift
    from tasks.data.privacy import apply_pii

    if not pii_applied:
        current = apply_pii(current, spec.plan.privacy, pii_key)

    detect = detect or PLAIN_STEPS.drift
    signal = signal or signal_drift
    reference = champion_reference(registry, spec.name)
    if reference is None:
        say(f"{spec.name} has no champion yet: nothing to compare with")
        return MonitorResult(spec.name, None, False, retrain="no champion")
    report_name = f"{spec.name}-monitor"
    result = detect(registry, reference[1], current, spec.drift, name=report_name)
    say(result.summary())
    retrain, event_id = "no drift", None
    if result.drifted:
        decision = decide_trigger(
            registry,
            spec.name,
            "drift",
            cooldown_minutes=spec.triggers.cooldown_minutes,
            drift_triggers=spec.triggers.drift,
            now=now,
        )
        retrain = "requested" if decision.start else decision.reason
        event_id = signal(
            registry,
            spec.name,
            result,
            report_name=report_name,
            emit=decision.start,
            publish=publish,
        )
        say(f"retrain: {retrain}")
    return MonitorResult(
        model=spec.name,
        champion=reference[0],
        drifted=result.drifted,
        drifted_share=result.drifted_share,
        columns=result.drifted_columns,
        retrain=retrain,
        event_id=event_id,
    )
