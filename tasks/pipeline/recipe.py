"""The retrain, written once: load → snapshot → validate → (reuse) → drift → train → gate →
canary → promote or abort, then record.

``run_retrain`` composes the steps of ``tasks.pipeline.steps``; which implementation runs each
step is a parameter: ``PLAIN_STEPS`` calls the functions directly (benchmarks, scripts), the
flow passes ``tasks.pipeline_tasks.PREFECT_STEPS``, the same functions as Prefect tasks. The
decisions (the gate's verdict with its numbers, the release's outcome and why) are logged
through the steps' logger: the standard ``logging`` one, or Prefect's run logger in a flow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from tasks.data.privacy import apply_pii
from tasks.data.sources import NO_S3, S3Options, load_frame
from tasks.data.streaming import LargeTable, large_table
from tasks.pipeline.costs import CostMeter
from tasks.pipeline.release_step import describe_outcome, release_candidate
from tasks.pipeline.runs import (
    RetrainSummary,
    champion_reference,
    find_completed_run,
    record_run,
    run_key,
    summarize_run,
)
from tasks.pipeline.steps import (
    check_contract,
    gate_candidate,
    grading_holdout,
    measure_drift,
    prepare_data,
    train_candidate,
)
from tasks.training.lineage import code_lineage
from tasks.training.plan import TrainingRun

if TYPE_CHECKING:
    import pandas as pd

    from registry.store import Registry
    from tasks.pipeline.plan import PipelinePlan
    from tasks.release.metric_sources import MetricsSource
    from tasks.release.preflight import ServerProbe

__all__ = ["PLAIN_STEPS", "RetrainEnv", "RetrainRequest", "Steps", "run_retrain"]


@dataclass(frozen=True)
class Steps:
    """One implementation of each step (a plain function or its Prefect task)."""

    load: Callable[..., Any]
    prepare: Callable[..., Any]
    validate: Callable[..., Any]
    find_reusable: Callable[..., Any]
    drift: Callable[..., Any]
    train: Callable[..., Any]
    gate: Callable[..., Any]
    release: Callable[..., Any]
    record: Callable[..., Any]
    logger: Callable[[], logging.Logger | logging.LoggerAdapter[Any]]
    """Where the run's decisions are logged (called inside the run)."""


PLAIN_STEPS = Steps(
    load=load_frame,
    prepare=prepare_data,
    validate=check_contract,
    find_reusable=find_completed_run,
    drift=measure_drift,
    train=train_candidate,
    gate=gate_candidate,
    release=release_candidate,
    record=record_run,
    logger=lambda: logging.getLogger(__name__),
)


@dataclass(frozen=True)
class RetrainRequest:
    """What this retrain was asked to do: on which data, why, whether to reuse a result."""

    source: str
    trigger: str = "manual"
    force: bool = False


@dataclass(frozen=True)
class RetrainEnv:
    """The clients a retrain uses, built from ``Settings`` at the entry point; ``server`` is
    the model server a release checks before its first canary step (None: no check)."""

    metrics: MetricsSource
    run: TrainingRun = field(default_factory=TrainingRun)
    s3: S3Options = field(default_factory=lambda: NO_S3)
    actor: str = "retrain-model"
    server: ServerProbe | None = None
    pii_key: str | None = field(default=None, repr=False)
    """Key of ``privacy.pii: hash`` columns (``Settings.pii_key``); never logged."""
    memory_budget_mb: int | None = None
    """Larger local Parquet sources are streamed (``Settings.memory_budget_mb``); None: never."""


def run_retrain(
    registry: Registry,
    plan: PipelinePlan,
    request: RetrainRequest,
    env: RetrainEnv,
    steps: Steps = PLAIN_STEPS,
) -> RetrainSummary:
    """Retrain ``plan``'s model; the champion changes only through the gate and the canary."""
    started = time.monotonic()
    steps = CostMeter(env.run.tracker).wrap(steps)  # each stage's cost, on the candidate
    model = plan.model
    # Personal columns go before anything is stored, logged or tracked (tasks.data.privacy).
    # A Parquet table (local, or on S3) larger than the memory budget is streamed, never
    # loaded whole.
    pii = partial(apply_pii, policy=plan.privacy, key=env.pii_key)
    frame: pd.DataFrame | LargeTable | None = large_table(
        request.source, env.memory_budget_mb, transform=pii, s3=env.s3
    )
    if frame is None:
        frame = steps.load(request.source, transform=pii, **env.s3)
    prepared = steps.prepare(registry, plan, frame)
    if plan.contract is None:
        steps.logger().info(
            "%s: the spec names no data contract; the batch is not validated", model
        )
    else:
        steps.validate(registry, plan, frame, prepared)
    key = run_key(prepared.batch.digest, plan.spec_digest or "", code_lineage()["code_digest"])
    earlier: RetrainSummary | None = (
        None if request.force else steps.find_reusable(registry, model, key)
    )
    if earlier is not None:
        steps.logger().info(
            "same data, spec and code as v%s (%s): reused",
            earlier.candidate_version,
            earlier.outcome,
        )
        return replace(earlier, reused=True, outcome="reused")
    reference = champion_reference(registry, model)
    drift = (
        steps.drift(registry, reference[1], frame, plan.drift, name=model)
        if reference is not None
        else None
    )
    candidate = steps.train(registry, plan, prepared, env.run)
    # The champion's holdout, taken after training: the champion may have changed meanwhile.
    # A promotion records the new champion's holdout itself (tasks.release), whatever the route.
    holdout = grading_holdout(registry, model, prepared.holdout.digest)
    decision = steps.gate(registry, plan, candidate.version, holdout)
    log = steps.logger()
    log.info(decision.log_line)
    release = None
    if decision.passed:
        release = steps.release(
            registry, model, candidate.version, plan.release, plan.canary, env.metrics,
            server=env.server, actor=env.actor,
        )  # fmt: skip
        log.info(
            "release of %s v%s: %s: %s",
            model, candidate.version, describe_outcome(release), release.reason,
        )  # fmt: skip
    else:
        log.info("release of %s v%s: not attempted, the gate rejected it", model, candidate.version)
    summary = summarize_run(
        registry,
        model,
        request.trigger,
        prepared.batch,
        drift,
        candidate,
        decision,
        release,
        started,
    )
    steps.record(registry, model, key, summary, actor=env.actor)
    return summary
