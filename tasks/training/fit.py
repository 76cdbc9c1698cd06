"""Train a tabular model, bundle it, store it and register it as a ``candidate`` version.

The run is seeded and deterministic: on CPU the same data, settings and seed give a
byte-identical bundle, hence the same digest. The device is chosen by Lightning
(``accelerator="auto"``): bf16-mixed precision on GPUs that support it, and Lightning's DDP
across several GPUs (``devices``/``strategy`` ``"auto"``) with no code change, each rank taking
its stride of every epoch's permutation. Checkpoints go to a folder keyed by the digest of the
run's inputs, so a run interrupted and started again resumes from ``last.ckpt``.

This module only orders the steps; they live in ``prepare`` (arrays, identity, seeded net),
``loop`` (checkpoints, callbacks, trainer, fit) and ``bundling`` (score, bundle, register,
track), which load torch and Lightning when a run starts rather than when this is imported.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tasks.training.lineage import frame_digest
from tasks.training.plan import TrainingPlan, TrainingRun

if TYPE_CHECKING:
    from registry.store import Registry
    from tasks.training.bundling import StoredCandidate
    from tasks.training.loop import FitOutcome

__all__ = ["TrainResult", "train_model", "train_result"]


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced and where it is recorded."""

    model: str
    version: int
    bundle_digest: str
    metrics: dict[str, float]
    lineage: dict[str, Any]
    epochs: int
    best_epoch: int
    resumed_from: Path | None
    mlflow_run_id: str | None
    duration_s: float
    rows: int
    train_rows_per_s: float = 0.0
    """Rows per second of the training steps alone (``models.callbacks.StepThroughput``)."""
    phases: Mapping[str, float] = field(default_factory=dict)
    """Wall seconds of each part of the run: prepare (read, encode), fit, score, store."""


def train_model(
    registry: Registry,
    data: pd.DataFrame | str,
    plan: TrainingPlan,
    run: TrainingRun | None = None,
    *,
    dataset_digest: str | None = None,
    lineage: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Fit ``plan`` on ``data`` (a frame, or a snapshot digest), store the bundle, register a
    candidate. Under DDP only global rank zero stores and registers; other ranks return
    version 0.

    ``lineage`` extras (e.g. ``spec_digest``) go into the bundle manifest; ``run.run_info``
    (e.g. ``flow_run_id``) differs per run, so it is recorded on the registry version only.
    """
    # torch and Lightning load here, not at import: flows import this module at start-up.
    from models.budget import budget_stop
    from tasks.training import bundling, loop, prepare
    from tasks.training.background import background_sample

    started = time.perf_counter()
    run = run or TrainingRun()
    from tasks.training import streaming_fit

    if streaming_fit.should_stream(registry, data, run):
        return streaming_fit.train_streaming(
            registry, data, plan, run, dataset_digest=dataset_digest, lineage=lineage
        )
    frame, dataset_digest = prepare.training_frame(registry, data, dataset_digest)
    arrays = prepare.encode_training_data(frame, plan)
    identity = prepare.run_identity(plan, dataset_digest or frame_digest(frame))
    # The spec's plan names the run; the fit uses its batch and rate for this data and device.
    plan = prepare.effective_plan(plan, train_rows=len(arrays.train_index))
    # Seeding, building the net and fitting draw from the generators in this order: keep it.
    net, module = prepare.build_network(plan, arrays.preprocessor)
    datamodule = prepare.build_datamodule(arrays, plan.fitting)
    marks = [time.perf_counter()]
    fitted = loop.fit_plan(plan, run, identity, module, datamodule, rows=arrays.rows)
    marks.append(time.perf_counter())
    # Where a budget stopped the fit: a fact of this run, for the version's lineage.
    run = replace(run, run_info={**run.run_info, **budget_stop(fitted.trainer)})
    if not fitted.trainer.is_global_zero:
        return train_result(plan, fitted, None, {}, None, rows=arrays.rows, started=started)
    metrics = bundling.best_validation_metrics(net, fitted.best, plan.task, arrays)
    marks.append(time.perf_counter())
    features = [*plan.numeric, *plan.categorical]
    seed = plan.fitting.seed
    stored, run_id = bundling.store_and_track(
        registry,
        plan,
        run,
        identity,
        fitted,
        net,
        arrays.preprocessor,
        metrics,
        extra=lineage,
        background=background_sample(arrays.frame, arrays.train_index, features, seed=seed),
        reason=f"trained on {identity.dataset_digest}",
    )
    result = train_result(plan, fitted, stored, metrics, run_id, rows=arrays.rows, started=started)
    marks.append(time.perf_counter())
    spans = zip(("prepare", "fit", "score", "store"), [started, *marks[:-1]], marks, strict=True)
    return replace(result, phases={name: end - begin for name, begin, end in spans})


def train_result(
    plan: TrainingPlan,
    fitted: FitOutcome,
    stored: StoredCandidate | None,
    metrics: dict[str, float],
    run_id: str | None,
    *,
    rows: int,
    started: float,
) -> TrainResult:
    """What the run produced; a DDP rank other than zero stored nothing (version 0)."""
    return TrainResult(
        model=plan.model,
        version=stored.record.version if stored is not None else 0,
        bundle_digest=stored.digest if stored is not None else "",
        metrics=metrics,
        lineage=dict(stored.record.lineage) if stored is not None else {},
        epochs=fitted.trainer.current_epoch,
        best_epoch=fitted.best.best_epoch,
        resumed_from=fitted.resumed_from,
        mlflow_run_id=run_id,
        duration_s=time.perf_counter() - started,
        rows=rows,
        train_rows_per_s=fitted.throughput.rows_per_second,
    )
