"""The end of a training run: score the best weights, bundle them, register, track.

What goes into the manifest decides the bundle's digest, so this file is part of the code
digest (``tasks.training.lineage``). Imported only when a model trains: it loads torch.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from models.bundle import EncodedBundle, encode_bundle, predict_arrays, save_bundle
from models.callbacks import BestWeights
from models.metrics import compute_metrics
from models.modules import TabularMLP
from registry.errors import TrainingError
from registry.records import ModelVersionRecord
from tasks.training.background import store_background
from tasks.training.plan import TrainingPlan, TrainingRun
from tasks.training.prepare import RunIdentity, TrainingArrays

if TYPE_CHECKING:
    import pandas as pd

    from models.preprocessing import Preprocessor
    from registry.store import Registry
    from tasks.training.loop import FitOutcome
    from tasks.training.tracking import Tracker

__all__ = [
    "StoredCandidate",
    "best_validation_metrics",
    "bundle_and_register",
    "manifest_lineage",
    "store_and_track",
    "track_outcome",
    "validation_metrics",
]


@dataclass(frozen=True)
class StoredCandidate:
    """A bundle stored in the registry and the candidate version that names it."""

    encoded: EncodedBundle
    digest: str
    record: ModelVersionRecord


def best_validation_metrics(
    net: TabularMLP, best: BestWeights, task: str, arrays: TrainingArrays
) -> dict[str, float]:
    """``validation_metrics`` of the in-memory validation rows (one chunk)."""
    val = arrays.val_index
    chunk = (arrays.numeric[val], arrays.categorical[val], arrays.target[val])
    return validation_metrics(net, best, task, arrays.preprocessor, [chunk])


def validation_metrics(
    net: TabularMLP,
    best: BestWeights,
    task: str,
    preprocessor: Preprocessor,
    chunks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> dict[str, float]:
    """Load the best epoch's weights into ``net`` (on the CPU, in eval mode) and score them on
    the validation rows, given as (numeric, codes, target in its own units) chunks: only the
    labels and predictions are gathered; ``val_loss`` is the best epoch's loss."""
    if best.weights is None:
        raise TrainingError("training produced no validation loss; check the data and settings")
    net.load_state_dict(best.weights)
    net.to("cpu").eval()
    truth: list[np.ndarray] = []
    predicted: list[np.ndarray] = []
    for numeric, categorical, target in chunks:
        truth.append(target)
        predicted.append(predict_arrays(net, task, preprocessor, numeric, categorical))
    scores = compute_metrics(task, np.concatenate(truth), np.concatenate(predicted))
    metrics = {f"val_{k}": v for k, v in scores.items()}
    metrics["val_loss"] = best.best
    return metrics


def manifest_lineage(
    plan: TrainingPlan,
    identity: RunIdentity,
    *,
    device: str,
    precision: str,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The lineage written into the bundle: the same inputs give the same lineage, so nothing
    that differs from run to run (run ids, actor) belongs here."""
    return {
        "dataset_digest": identity.dataset_digest,
        "inputs_digest": identity.inputs_digest,
        "seed": plan.fitting.seed,
        "hyperparameters": {
            "model": plan.architecture.model_dump(mode="json"),
            "training": plan.fitting.model_dump(mode="json"),
        },
        "device": device,
        "precision": precision,
        **identity.code,
        **dict(extra or {}),
    }


def bundle_and_register(
    registry: Registry,
    plan: TrainingPlan,
    run: TrainingRun,
    net: TabularMLP,
    preprocessor: Preprocessor,
    metrics: dict[str, float],
    lineage: dict[str, Any],
    *,
    background: pd.DataFrame,
    reason: str,
    mlflow_run_id: str | None,
) -> StoredCandidate:
    """Store the bundle (weights, then manifest) and register it as a ``candidate`` version.

    The version's lineage adds the per-run facts (``run.run_info``, the MLflow run id) that
    the bundle leaves out, and the digest of ``background``, the training rows a version is
    explained against (``tasks.training.background``; stored apart, the bundle is unchanged).
    """
    encoded = encode_bundle(
        net,
        architecture=net.architecture,
        preprocessor=preprocessor,
        task=plan.task,
        target=plan.target,
        metrics=metrics,
        lineage=lineage,
    )
    digest = save_bundle(registry.put_bytes, encoded)
    background_digest = store_background(registry, background)
    record = registry.catalog.register_model_version(
        plan.model,
        digest,
        metrics=metrics,
        status="candidate",
        actor=run.actor,
        reason=reason,
        lineage={
            **lineage,
            **dict(run.run_info or {}),
            "mlflow_run_id": mlflow_run_id,
            "background_digest": background_digest,
        },
    )
    return StoredCandidate(encoded, digest, record)


def store_and_track(
    registry: Registry,
    plan: TrainingPlan,
    run: TrainingRun,
    identity: RunIdentity,
    fitted: FitOutcome,
    net: TabularMLP,
    preprocessor: Preprocessor,
    metrics: dict[str, float],
    *,
    extra: Mapping[str, Any] | None,
    background: pd.DataFrame,
    reason: str,
) -> tuple[StoredCandidate, str | None]:
    """The end of a fit on rank zero, whatever path read the data: the bundle stored and
    registered (``bundle_and_register``), the outcome tracked, the finished run's checkpoints
    removed (a rerun of the same inputs must train afresh, not resume a done run). Returns
    the stored candidate and the tracker's run id."""
    manifest = manifest_lineage(
        plan,
        identity,
        device=str(fitted.trainer.strategy.root_device.type),
        precision=fitted.precision,
        extra=extra,
    )
    tracker = fitted.tracker
    run_id = tracker.run_id if tracker is not None else None
    stored = bundle_and_register(
        registry,
        plan,
        run,
        net,
        preprocessor,
        metrics,
        manifest,
        background=background,
        reason=reason,
        mlflow_run_id=run_id,
    )
    if tracker is not None:
        epoch = fitted.trainer.current_epoch
        tracker.log_metrics({"train_rows_per_s": fitted.throughput.rows_per_second}, step=epoch)
        track_outcome(tracker, metrics, epoch, stored)
    shutil.rmtree(fitted.ckpt_dir, ignore_errors=True)
    return stored, run_id


def track_outcome(
    tracker: Tracker, metrics: Mapping[str, float], epoch: int, stored: StoredCandidate
) -> None:
    """Log the final metrics, the bundle's digest and version, and its manifest; finish."""
    tracker.log_metrics({f"final_{k}": v for k, v in metrics.items()}, step=epoch)
    tracker.set_tags(
        {"bundle_digest": stored.digest, "registry_version": str(stored.record.version)}
    )
    tracker.log_text(stored.encoded.manifest.decode(), "bundle_manifest.json")
    tracker.finish("FINISHED")
