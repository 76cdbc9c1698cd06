"""A retrain that died after registering its candidate is taken up again, not repeated.

Training is content-addressed: the same data, spec and code give the same bundle. A run that
is killed (its worker or pod gone), cancelled, or retried by Prefect after a transient error
may already have registered its candidate; the next run of the same inputs finds no
``retrain.completed`` for it (``find_completed_run``), so it would train the same bundle again
and register it as a second version. ``train_or_resume`` looks first: a version of the model
trained on the same inputs, still a ``candidate``, whose run never completed, is that run's
candidate, and the new run carries on with it (gate, release) instead. A run killed while
training registered nothing: it trains again, from its last checkpoint
(``tasks.training.loop.resume_point``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tasks.pipeline.steps import train_candidate, trained_before
from tasks.training.fit import TrainResult

if TYPE_CHECKING:
    from registry.records import ModelVersionRecord
    from registry.store import Registry
    from tasks.pipeline.plan import PipelinePlan
    from tasks.pipeline.steps import PreparedData
    from tasks.training.plan import TrainingRun

__all__ = ["train_or_resume", "unfinished_candidate"]

_COMPLETED = "retrain.completed"
_log = logging.getLogger(__name__)


def unfinished_candidate(
    registry: Registry, plan: PipelinePlan, prepared: PreparedData
) -> ModelVersionRecord | None:
    """The candidate an unfinished run registered for these inputs, if there is one."""
    record = trained_before(registry, plan, prepared)
    if record is None or record.status != "candidate":
        return None
    for event in registry.catalog.events(plan.model, kinds=[_COMPLETED]):
        if event.payload.get("candidate_version") == record.version:
            return None  # its run finished (e.g. not released): a new run trains anew
    return record


def train_or_resume(
    registry: Registry, plan: PipelinePlan, prepared: PreparedData, run: TrainingRun
) -> TrainResult:
    """The candidate of these inputs: the one an unfinished run registered, else a new one
    trained and registered (``train_candidate``)."""
    record = unfinished_candidate(registry, plan, prepared)
    if record is None:
        return train_candidate(registry, plan, prepared, run)
    _say(
        f"{plan.model} v{record.version} was trained on the same inputs by a run that did "
        "not finish: it is the candidate, not trained again"
    )
    lineage = dict(record.lineage)
    return TrainResult(
        model=record.model,
        version=record.version,
        bundle_digest=record.bundle_digest,
        metrics=dict(record.metrics),
        lineage=lineage,
        epochs=int(lineage.get("epochs", 0) or 0),
        best_epoch=int(lineage.get("best_epoch", 0) or 0),
        resumed_from=None,
        mlflow_run_id=lineage.get("mlflow_run_id"),
        duration_s=0.0,
        rows=prepared.training.rows,
    )


def _say(line: str) -> None:
    """Tell the run's log (Prefect's, inside a run) what was decided."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        get_run_logger().info(line)
    except MissingContextError:
        _log.info(line)
