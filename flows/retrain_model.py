"""``retrain-model``: snapshot → validate → drift → train → gate → canary → promote or abort.

Every route into a retrain ends here, and here the one trigger decision is taken: a run
started by hand always goes ahead; an automatic one (alert, drift, schedule) folds into the
last retrain while that is inside the spec's cooldown (``tasks.pipeline.trigger``). The steps
themselves are ``tasks.pipeline.recipe.run_retrain``, each run as a Prefect task.
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow
from prefect.concurrency.sync import concurrency

from flows.context import (
    flow_run_id,
    open_pipeline,
    resolve_trigger,
    retrain_limit_name,
    trigger_time,
)
from retrain.config.settings import Settings
from tasks.pipeline.recipe import RetrainRequest, run_retrain
from tasks.pipeline.runs import RetrainSummary
from tasks.pipeline.trigger import (
    RETRAIN_SKIPPED,
    RETRAIN_STARTED,
    decide_trigger,
    record_trigger,
)
from tasks.pipeline_tasks import PREFECT_STEPS
from tasks.release_tasks import repair_model_releases
from tasks.reporting.artifacts import artifact_key, publish_table

__all__ = ["retrain_model"]


@flow(name="retrain-model", log_prints=True)
def retrain_model(
    pipeline: str,
    force: bool = False,
    trigger: str | None = None,
    source: str | None = None,
    as_of: datetime | None = None,
    settings: Settings | None = None,
) -> RetrainSummary:
    """Retrain ``pipeline``'s model on fresh data; the champion changes only through the gates.

    ``trigger`` says what started the run (default: ``schedule`` for a run the scheduler
    created, ``manual`` otherwise); ``source`` overrides the spec's dataset source; ``force``
    retrains even when an earlier run had the same dataset, spec and code digests; ``as_of``
    is the time the trigger decision uses (default now); ``settings`` default to the
    environment's.
    """
    now, trigger = trigger_time(as_of), resolve_trigger(trigger)
    # One retrain per model at a time, whatever started it: the global limit `retrain-<model>`
    # has one slot (created by `retrain up`, `pipelines register` and the demo).
    with (
        concurrency(retrain_limit_name(pipeline), occupy=1),
        open_pipeline(pipeline, settings) as ctx,
    ):
        spec, reg = ctx.spec, ctx.registry
        run_id = flow_run_id()
        decision = decide_trigger(
            reg,
            spec.name,
            trigger,
            cooldown_minutes=spec.triggers.cooldown_minutes,
            drift_triggers=spec.triggers.drift,
            now=now,
            run_id=run_id,
        )
        kind = RETRAIN_STARTED if decision.start else RETRAIN_SKIPPED
        record_trigger(
            reg,
            kind,
            spec.name,
            trigger,
            now=now,
            run_id=run_id,
            reason=decision.reason,
            actor="retrain-model",
        )
        print(decision.reason)
        if not decision.start:
            return RetrainSummary(
                spec.name, trigger, outcome="skipped", gate_reasons=(decision.reason,)
            )
        repair_model_releases(reg, [spec.name])
        request = RetrainRequest(source or spec.dataset.source, trigger=trigger, force=force)
        summary = run_retrain(reg, spec.plan, request, ctx.retrain_env(trigger), PREFECT_STEPS)
        if summary.reused:
            print(f"same data, spec and code as v{summary.candidate_version}: reused")
        publish_table(
            artifact_key("retrain", spec.name), [summary.to_dict()], description="Retrain outcome"
        )
        return summary
