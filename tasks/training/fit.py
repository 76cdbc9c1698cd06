"""Train a tabular model, bundle it, store it and register it as a ``candidate`` version.

The run is seeded and deterministic: on CPU the same data, settings and seed give a
byte-identical bundle, hence the same digest. The device is chosen by Lightning
(``accelerator="auto"``): bf16-mixed precision on GPUs that support it, and Lightning's DDP
across several GPUs (``devices``/``strategy`` ``"auto"``) with no code change, each rank taking
its stride of every epoch's permutation. Checkpoints go to a folder keyed by the digest of the
run's inputs, so a run interrupted and started again resumes from ``last.ckpt``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.config import resolve_precision
from registry.errors import TrainingError
from tasks.artifacts import ProgressReporter, artifact_key
from tasks.training.lineage import code_lineage, frame_digest, inputs_digest
from tasks.training.plan import TrainingPlan, TrainingRun

if TYPE_CHECKING:
    import lightning as L

    from registry.store import Registry

__all__ = ["TrainResult", "train_model"]


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
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
    from lightning.pytorch.utilities import rank_zero_only

    from models.bundle import encode_bundle, save_bundle
    from models.callbacks import BestWeights, EpochMetrics, ProgressCallback
    from models.lightning_module import TabularModule
    from models.modules import TabularMLP, embedding_dims_for
    from models.preprocessing import Preprocessor, target_values
    from models.tensor_data import TabularDataModule, split_indices

    started = time.perf_counter()
    run = run or TrainingRun()
    model, target, task = plan.model, plan.target, plan.task
    numeric, categorical = plan.numeric, plan.categorical
    mcfg, tcfg = plan.architecture, plan.fitting
    tracker, checkpoint_root, run_info = run.tracker, run.checkpoint_root, run.run_info
    progress_bar, callbacks, actor = run.progress_bar, run.callbacks, run.actor
    if isinstance(data, str):
        from tasks.data.snapshots import read_snapshot

        dataset_digest, data = data, read_snapshot(registry, data)
    frame = data
    y = target_values(frame, target, task)
    train_idx, val_idx = split_indices(len(frame), tcfg.val_fraction, tcfg.seed)
    pre = Preprocessor.fit(
        frame.iloc[train_idx],
        numeric,
        categorical,
        max_categories=mcfg.max_categories,
        target=y[train_idx] if task == "regression" else None,
    )
    num, cat = pre.transform(frame)
    y_fit = (y - pre.target_mean) / pre.target_std if task == "regression" else y
    digest_of_data = dataset_digest or frame_digest(frame)
    code = code_lineage()
    run_key = inputs_digest(
        {
            "dataset": digest_of_data,
            "target": target,
            "task": task,
            "numeric": list(numeric),
            "categorical": list(categorical),
            "model": mcfg.model_dump(mode="json"),
            "training": tcfg.model_dump(mode="json"),
            "code": code["code_digest"],
        }
    )
    L.seed_everything(tcfg.seed, workers=True, verbose=False)
    net = TabularMLP(
        n_numeric=len(pre.numeric),
        cardinalities=pre.cardinalities,
        embedding_dims=embedding_dims_for(
            pre.cardinalities, fixed=mcfg.embedding_dim, maximum=mcfg.max_embedding_dim
        ),
        hidden_sizes=mcfg.hidden_sizes,
        dropout=mcfg.dropout,
        activation=mcfg.activation,
    )
    module = TabularModule(net, task, tcfg.learning_rate, tcfg.weight_decay)  # type: ignore[arg-type]  # task checked by target_values
    datamodule = TabularDataModule(
        num,
        cat,
        y_fit,
        train_index=train_idx,
        val_index=val_idx,
        batch_size=tcfg.batch_size,
        seed=tcfg.seed,
    )
    ckpt_dir = (checkpoint_root or Path(".retrain/checkpoints")) / run_key.split(":")[1][:24]
    last = ckpt_dir / "last.ckpt"
    resumed_from = last if last.exists() else None
    precision = resolve_precision(tcfg.precision, tcfg.accelerator)
    params = {
        "model": model,
        "target": target,
        "task": task,
        "rows": len(frame),
        "precision": precision,
        **mcfg.model_dump(),
        **tcfg.model_dump(),
    }
    # Under DDP every rank runs this function; only rank zero tracks, stores and registers.
    if getattr(rank_zero_only, "rank", 0) != 0:
        tracker = None
    if tracker is not None:
        tags = {"model": model, "dataset_digest": digest_of_data, "inputs_digest": run_key}
        tracker.start(f"{model}-train", params, tags)
    best = BestWeights("val_loss")
    reporter = ProgressReporter(artifact_key("train", model), description=f"training {model}")
    cbs: list[L.Callback] = [
        EarlyStopping("val_loss", patience=tcfg.patience, mode="min"),
        # One checkpoint per epoch, always named last.ckpt (BestWeights keeps the best weights
        # inside it), rather than a best file plus last: half the writes.
        ModelCheckpoint(
            dirpath=ckpt_dir, filename="last", save_top_k=1, enable_version_counter=False
        ),
        best,
        ProgressCallback(reporter.update),
        *([EpochMetrics(tracker.log_metrics)] if tracker is not None else []),
        *([RichProgressBar()] if progress_bar else []),
        *callbacks,
    ]
    trainer = L.Trainer(
        accelerator=tcfg.accelerator,
        devices=tcfg.devices,
        strategy=tcfg.strategy,
        precision=precision,  # type: ignore[arg-type]  # validated by TrainingConfig
        max_epochs=tcfg.max_epochs,
        deterministic="warn",
        callbacks=cbs,
        logger=False,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=ckpt_dir,
    )
    threads = torch.get_num_threads()
    if tcfg.cpu_threads is not None:
        torch.set_num_threads(tcfg.cpu_threads)
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
    if not trainer.is_global_zero:
        return TrainResult(
            model,
            0,
            "",
            {},
            {},
            trainer.current_epoch,
            best.best_epoch,
            resumed_from,
            None,
            time.perf_counter() - started,
            len(frame),
        )
    if best.weights is None:
        raise TrainingError("training produced no validation loss; check the data and settings")
    net.load_state_dict(best.weights)
    net.to("cpu").eval()
    metrics = _validation_metrics(net, task, num[val_idx], cat[val_idx], y[val_idx], pre)
    metrics["val_loss"] = best.best
    manifest_lineage = {
        "dataset_digest": digest_of_data,
        "inputs_digest": run_key,
        "seed": tcfg.seed,
        "hyperparameters": {
            "model": mcfg.model_dump(mode="json"),
            "training": tcfg.model_dump(mode="json"),
        },
        "device": str(trainer.strategy.root_device.type),
        "precision": precision,
        **code,
        **dict(lineage or {}),
    }
    encoded = encode_bundle(
        net,
        architecture=net.architecture,
        preprocessor=pre,
        task=task,
        target=target,
        metrics=metrics,
        lineage=manifest_lineage,
    )
    digest = save_bundle(registry.put_bytes, encoded)
    run_id = tracker.run_id if tracker is not None else None
    record = registry.catalog.register_model_version(
        model,
        digest,
        metrics=metrics,
        status="candidate",
        actor=actor,
        reason=f"trained on {digest_of_data}",
        lineage={**manifest_lineage, **dict(run_info or {}), "mlflow_run_id": run_id},
    )
    if tracker is not None:
        tracker.log_metrics(
            {f"final_{k}": v for k, v in metrics.items()}, step=trainer.current_epoch
        )
        tracker.set_tags({"bundle_digest": digest, "registry_version": str(record.version)})
        tracker.log_text(encoded.manifest.decode(), "bundle_manifest.json")
        tracker.finish("FINISHED")
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # finished: a rerun must not resume a done run
    return TrainResult(
        model=model,
        version=record.version,
        bundle_digest=digest,
        metrics=metrics,
        lineage=dict(record.lineage),
        epochs=trainer.current_epoch,
        best_epoch=best.best_epoch,
        resumed_from=resumed_from,
        mlflow_run_id=run_id,
        duration_s=time.perf_counter() - started,
        rows=len(frame),
    )


def _validation_metrics(
    net: Any, task: str, num: np.ndarray, cat: np.ndarray, y: np.ndarray, pre: Any
) -> dict[str, float]:
    from models.bundle import predict_arrays
    from models.metrics import compute_metrics

    pred = predict_arrays(net, task, pre, num, cat)
    return {f"val_{k}": v for k, v in compute_metrics(task, y, pred).items()}
