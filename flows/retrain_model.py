"""``retrain-model``: snapshot → validate → drift → train → gate → canary → promote or abort.

Every route into a retrain ends here, and here the one trigger decision is taken: a run
started by hand always goes ahead; an automatic one (alert, drift, schedule) folds into the
last retrain while that is inside the spec's cooldown (``tasks.pipeline.trigger``). The body is
``tasks.pipeline.cycle.retrain_when_due``, each step run as a Prefect task.

A run stopped by one of the platform's own errors (its data or spec) ends Failed with one line
as its state message (stage, reason, what to do; also its ``run.failed`` event), not a chain of
tracebacks; any other exception fails the run as usual, traceback and all.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from prefect import flow, get_run_logger
from prefect.states import Failed

from flows.context import (
    flow_run_id,
    open_pipeline,
    resolve_trigger,
    trigger_time,
)
from flows.hooks import end_dead_run, retrain_slot
from registry.errors import RetrainError, RunFailedError
from retrain.config.settings import Settings
from tasks.pipeline.cycle import retrain_when_due
from tasks.pipeline.failures import one_line
from tasks.pipeline.recipe import RetrainRequest
from tasks.pipeline.runs import RetrainSummary
from tasks.pipeline_tasks import PREFECT_STEPS
from tasks.reporting.artifacts import artifact_key, publish_table

__all__ = ["retrain_model"]


@flow(
    name="retrain-model", log_prints=True, on_crashed=[end_dead_run], on_cancellation=[end_dead_run]
)
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
    environment's. Called in-process, a failed run raises its error (``RunFailedError`` for
    a retrain stopped on its data or spec); the Prefect run's state message is its one line.
    """
    try:
        return _retrain(pipeline, force, trigger, source, as_of, settings)
    except RetrainError as exc:
        said = one_line(str(exc))
        line = said if isinstance(exc, RunFailedError) else f"retrain of {pipeline}: {said}"
        # Prefect takes a returned state as the run's final one, and logs it: the line, once.
        return cast(RetrainSummary, Failed(message=line, data=exc))


def _retrain(
    pipeline: str,
    force: bool,
    trigger: str | None,
    source: str | None,
    as_of: datetime | None,
    settings: Settings | None,
) -> RetrainSummary:
    """The flow's body: the one trigger decision, then the retrain (see ``retrain_model``)."""
    now, trigger = trigger_time(as_of), resolve_trigger(trigger)
    # One retrain per model at a time, whatever started it: the global limit `retrain-<model>`
    # has one slot (created by `retrain up`, `pipelines register` and the demo).
    with (
        retrain_slot(pipeline),
        open_pipeline(pipeline, settings) as ctx,
    ):
        spec, log = ctx.spec, get_run_logger()
        request = RetrainRequest(source or spec.dataset.source, trigger=trigger, force=force)
        summary = retrain_when_due(
            ctx.registry,
            spec,
            request,
            ctx.retrain_env(trigger),
            now=now,
            run_id=flow_run_id(),
            steps=PREFECT_STEPS,
            say=log.info,
        )
        if summary.outcome != "skipped":
            publish_table(
                artifact_key("retrain", spec.name),
                [summary.to_dict()],
                description="Retrain outcome",
            )
        return summary
