"""The Lightning loop of a training run: checkpoints, tracking start, callbacks, trainer, fit.

The trainer's settings (early stopping, checkpoints, determinism) decide what the trained model
is, so this file is part of the code digest (``tasks.training.lineage``). Imported only when a
model trains: it loads torch and Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.utilities import rank_zero_only

from models.budget import TrainingBudget
from models.callbacks import (
    BestWeights,
    EpochMetrics,
    EpochSeed,
    ProgressCallback,
    ResumableEarlyStopping,
    StepThroughput,
)
from models.config import TrainingConfig, resolve_precision
from tasks.reporting.artifacts import ProgressReporter, artifact_key
from tasks.training.plan import TrainingPlan, TrainingRun
from tasks.training.prepare import RunIdentity

if TYPE_CHECKING:
    from tasks.training.tracking import Tracker

__all__ = [
    "FitOutcome",
    "build_callbacks",
    "build_trainer",
    "checkpoint_dir",
    "fit_plan",
    "fit_resuming",
    "resume_point",
    "start_tracking",
]

_DEFAULT_CHECKPOINT_ROOT = Path(".retrain/checkpoints")


@dataclass(frozen=True)
class FitOutcome:
    """A finished fit: its trainer and best weights, where it resumed from, what tracks it."""

    trainer: L.Trainer
    best: BestWeights
    ckpt_dir: Path
    resumed_from: Path | None
    precision: str
    tracker: Tracker | None  # None where nothing is tracked, and on DDP ranks other than zero
    throughput: StepThroughput


def fit_plan(
    plan: TrainingPlan,
    run: TrainingRun,
    identity: RunIdentity,
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    *,
    rows: int,
) -> FitOutcome:
    """Fit ``module`` as ``plan`` says, resuming an interrupted run of the same inputs, tracked
    (on rank zero) from the start of the fit."""
    fitting = plan.fitting
    ckpt_dir = checkpoint_dir(run.checkpoint_root, identity.inputs_digest)
    resumed_from = resume_point(ckpt_dir)
    precision = resolve_precision(fitting.precision, fitting.accelerator)
    tracker = start_tracking(run.tracker, plan, identity, rows=rows, precision=precision)
    best = BestWeights("val_loss")
    throughput = StepThroughput()
    trainer = build_trainer(
        fitting,
        precision,
        [*build_callbacks(plan, run, tracker, ckpt_dir, best), throughput],
        ckpt_dir=ckpt_dir,
        progress_bar=run.progress_bar,
    )
    fit_resuming(
        trainer,
        module,
        datamodule,
        resumed_from=resumed_from,
        tracker=tracker,
        cpu_threads=fitting.cpu_threads,
    )
    return FitOutcome(trainer, best, ckpt_dir, resumed_from, precision, tracker, throughput)


def checkpoint_dir(root: Path | None, inputs_digest: str) -> Path:
    """The run's checkpoint folder, keyed by its inputs so that a rerun of them resumes."""
    return (root or _DEFAULT_CHECKPOINT_ROOT) / inputs_digest.split(":")[1][:24]


def resume_point(ckpt_dir: Path) -> Path | None:
    """``last.ckpt`` of an interrupted run of the same inputs, if there is one."""
    last = ckpt_dir / "last.ckpt"
    return last if last.exists() else None


def start_tracking(
    tracker: Tracker | None,
    plan: TrainingPlan,
    identity: RunIdentity,
    *,
    rows: int,
    precision: str,
) -> Tracker | None:
    """Start the tracker's run and return the tracker, or None where nothing is tracked.

    Under DDP every rank trains; only rank zero tracks, stores and registers.
    """
    if getattr(rank_zero_only, "rank", 0) != 0 or tracker is None:
        return None
    params = {
        "model": plan.model,
        "target": plan.target,
        "task": plan.task,
        "rows": rows,
        "precision": precision,
        **plan.architecture.model_dump(),
        **plan.fitting.model_dump(),
    }
    tags = {
        "model": plan.model,
        "dataset_digest": identity.dataset_digest,
        "inputs_digest": identity.inputs_digest,
    }
    tracker.start(f"{plan.model}-train", params, tags)
    return tracker


def build_callbacks(
    plan: TrainingPlan,
    run: TrainingRun,
    tracker: Tracker | None,
    ckpt_dir: Path,
    best: BestWeights,
) -> list[L.Callback]:
    """Per-epoch seeding, early stopping, the resumable checkpoint, best weights, progress, then
    the run's own. The checkpoint holds the state of every callback that has some, so a resumed
    run ends where an uninterrupted one would."""
    reporter = ProgressReporter(
        artifact_key("train", plan.model), description=f"training {plan.model}"
    )
    return [
        EpochSeed(plan.fitting.seed),
        ResumableEarlyStopping("val_loss", patience=plan.fitting.patience, mode="min"),
        # One checkpoint per epoch, always named last.ckpt (BestWeights keeps the best weights
        # inside it), rather than a best file plus last: half the writes.
        ModelCheckpoint(
            dirpath=ckpt_dir, filename="last", save_top_k=1, enable_version_counter=False
        ),
        best,
        ProgressCallback(reporter.update),
        *([EpochMetrics(tracker.log_metrics)] if tracker is not None else []),
        *([RichProgressBar()] if run.progress_bar else []),
        *([TrainingBudget(run.limits)] if run.limits is not None and run.limits.limited else []),
        *run.callbacks,
    ]


def build_trainer(
    fitting: TrainingConfig,
    precision: str,
    callbacks: list[L.Callback],
    *,
    ckpt_dir: Path,
    progress_bar: bool,
) -> L.Trainer:
    """A Lightning trainer on the plan's devices; no logger (the tracker is a callback) and no
    sanity validation (the first epoch validates anyway)."""
    return L.Trainer(
        accelerator=fitting.accelerator,
        devices=fitting.devices,
        strategy=fitting.strategy,
        precision=precision,  # type: ignore[arg-type]  # validated by TrainingConfig
        max_epochs=fitting.max_epochs,
        deterministic="warn",
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=ckpt_dir,
    )


def fit_resuming(
    trainer: L.Trainer,
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    *,
    resumed_from: Path | None,
    tracker: Tracker | None,
    cpu_threads: int | None,
) -> None:
    """Fit from ``resumed_from`` if given, on ``cpu_threads`` torch threads; the caller's thread
    count is restored afterwards, and a failed fit marks the tracked run FAILED."""
    threads = torch.get_num_threads()
    if cpu_threads is not None:
        torch.set_num_threads(cpu_threads)
    try:
        trainer.fit(
            module, datamodule=datamodule, ckpt_path=str(resumed_from) if resumed_from else None
        )
    except BaseException:
        if tracker is not None:
            tracker.finish("FAILED")
        raise
    finally:
        torch.set_num_threads(threads)
