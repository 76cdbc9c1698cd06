"""The end of a training run: score the best weights, bundle them, register, track.

What goes into the manifest decides the bundle's digest, so this file is part of the code
digest (``tasks.training.lineage``). Imported only when a model trains: it loads torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    from tasks.training.tracking import Tracker

__all__ = [
    "StoredCandidate",
    "best_validation_metrics",
    "bundle_and_register",
    "manifest_lineage",
    "track_outcome",
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
    """Load the best epoch's weights into ``net`` (on the CPU, in eval mode) and score them on
    the validation rows, in the target's own units; ``val_loss`` is the best epoch's loss."""
    if best.weights is None:
        raise TrainingError("training produced no validation loss; check the data and settings")
    net.load_state_dict(best.weights)
    net.to("cpu").eval()
    val = arrays.val_index
    pred = predict_arrays(
        net, task, arrays.preprocessor, arrays.numeric[val], arrays.categorical[val]
    )
    metrics = {f"val_{k}": v for k, v in compute_metrics(task, arrays.target[val], pred).items()}
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
