"""Training: registers a candidate, is reproducible, resumes to the same bundle, tracks to
MLflow, uses the GPU."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from models.bundle import load_bundle
from models.config import ModelConfig, TrainingConfig
from registry.errors import TrackingError, TrainingError
from registry.store import Registry
from retrain.config.settings import Settings
from retrain.config.wiring import build_tracker
from tasks.data.simulator import (
    FEATURES_CATEGORICAL,
    FEATURES_NUMERIC,
    REGRESSION_TARGET,
    TARGET,
    simulate,
)
from tasks.training.fit import TrainResult, train_model
from tasks.training.plan import TrainingPlan, TrainingRun
from tasks.training.tracking import MlflowTracker

FAST = TrainingConfig(max_epochs=3, batch_size=256, patience=2)
SMALL = ModelConfig(hidden_sizes=(16,))


@pytest.fixture(scope="module")
def loans() -> pd.DataFrame:
    return simulate(1500, seed=1)


_PLAN_FIELDS = {"model", "target", "task", "numeric", "categorical", "architecture", "fitting"}
_RUN_FIELDS = {"tracker", "checkpoint_root", "run_info", "progress_bar", "callbacks", "actor"}


def _train(registry: Registry, frame: pd.DataFrame, tmp_path: Path, **kw: Any) -> TrainResult:
    """Train with the small defaults above; ``kw`` sets fields of the plan or the run, or
    ``train_model``'s keywords."""
    plan_args: dict[str, Any] = dict(
        model="loan-default",
        target=TARGET,
        task="binary",
        numeric=tuple(FEATURES_NUMERIC),
        categorical=tuple(FEATURES_CATEGORICAL),
        architecture=SMALL,
        fitting=FAST,
    )
    run_args: dict[str, Any] = dict(checkpoint_root=tmp_path / "checkpoints")
    for key in list(kw):
        if key in _PLAN_FIELDS:
            plan_args[key] = kw.pop(key)
        elif key in _RUN_FIELDS:
            run_args[key] = kw.pop(key)
    return train_model(registry, frame, TrainingPlan(**plan_args), TrainingRun(**run_args), **kw)


def test_training_registers_a_candidate_with_its_lineage(
    registry: Registry, loans: pd.DataFrame, tmp_path: Path
) -> None:
    result = _train(
        registry,
        loans,
        tmp_path,
        lineage={"spec_digest": "sha256:" + "a" * 64},
        run_info={"flow_run_id": "run-1"},
    )
    record = registry.catalog.get_model_version("loan-default", result.version)
    assert record.status == "candidate"
    assert record.bundle_digest == result.bundle_digest
    assert record.lineage["flow_run_id"] == "run-1"
    assert 0.5 < result.metrics["val_roc_auc"] <= 1.0
    bundle = load_bundle(registry.get_bytes, result.bundle_digest)
    lineage = bundle.manifest["lineage"]
    assert lineage["spec_digest"] == "sha256:" + "a" * 64
    assert lineage["seed"] == 0 and lineage["code_digest"].startswith("sha256:")
    assert "torch" in lineage["libraries"]
    assert "flow_run_id" not in lineage  # run ids differ per run; they live on the version
    predictions = bundle.predict(loans.head(50))
    assert predictions.shape == (50,) and ((predictions > 0) & (predictions < 1)).all()
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_same_data_and_seed_give_the_same_bundle_digest(
    registry: Registry, loans: pd.DataFrame, tmp_path: Path
) -> None:
    first = _train(registry, loans, tmp_path)
    second = _train(registry, loans, tmp_path)
    reseeded = _train(registry, loans, tmp_path, fitting=FAST.model_copy(update={"seed": 1}))
    assert first.bundle_digest == second.bundle_digest
    assert (first.version, second.version) == (1, 2)
    assert reseeded.bundle_digest != first.bundle_digest


class _Interrupt(L.Callback):
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 2:
            raise RuntimeError("power cut")


class _EpochsSeen(L.Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs.append(trainer.current_epoch)


def test_an_interrupted_run_resumes_from_its_last_checkpoint(
    registry: Registry, loans: pd.DataFrame, tmp_path: Path
) -> None:
    config = FAST.model_copy(update={"max_epochs": 4, "patience": 10})
    with pytest.raises(RuntimeError, match="power cut"):
        _train(registry, loans, tmp_path, fitting=config, callbacks=[_Interrupt()])
    assert registry.catalog.list_model_versions("loan-default") == []
    seen = _EpochsSeen()
    resumed = _train(registry, loans, tmp_path, fitting=config, callbacks=[seen])
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "last.ckpt"
    assert seen.epochs == [2, 3]  # epochs 0 and 1 were not trained again
    assert resumed.version == 1


class _PowerCut(L.Callback):
    """Fails the run as epoch ``epoch`` starts or, with ``epoch=None``, once training has ended
    (the last checkpoint written, the bundle not yet stored)."""

    def __init__(self, epoch: int | None) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("power cut")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.epoch is None:
            raise RuntimeError("power cut")


# Where the power goes, given the uninterrupted run's result: the epoch that fails to start.
_CUTS: dict[str, Callable[[TrainResult], int | None]] = {
    "before the best epoch": lambda whole: 1,  # dropout draws of the epochs to come matter
    "while early stopping waits": lambda whole: whole.epochs - 1,  # one epoch into patience
    "after early stopping": lambda whole: None,  # stopped; the bundle not yet stored
}


@pytest.mark.parametrize("cut", list(_CUTS))
def test_a_resumed_run_ends_with_the_bundle_of_an_uninterrupted_one(
    registry: Registry, loans: pd.DataFrame, tmp_path: Path, cut: str
) -> None:
    config = FAST.model_copy(update={"max_epochs": 40, "patience": 2})  # dropout stays on
    whole = _train(registry, loans, tmp_path, fitting=config)
    assert whole.epochs == whole.best_epoch + 1 + config.patience < config.max_epochs
    assert whole.best_epoch > 1
    with pytest.raises(RuntimeError, match="power cut"):
        _train(registry, loans, tmp_path, fitting=config, callbacks=[_PowerCut(_CUTS[cut](whole))])
    resumed = _train(registry, loans, tmp_path, fitting=config)
    assert resumed.resumed_from is not None
    assert (resumed.epochs, resumed.best_epoch) == (whole.epochs, whole.best_epoch)
    assert resumed.metrics == whole.metrics
    assert resumed.bundle_digest == whole.bundle_digest


def test_regression_predicts_on_the_target_scale(registry: Registry, tmp_path: Path) -> None:
    frame = simulate(1500, seed=2)
    result = _train(
        registry, frame, tmp_path, model="lgd", target=REGRESSION_TARGET, task="regression"
    )
    assert {"val_rmse", "val_mae"} <= set(result.metrics)
    bundle = load_bundle(registry.get_bytes, result.bundle_digest)
    predictions = bundle.predict(frame.head(200))
    target = frame[REGRESSION_TARGET].to_numpy()
    assert abs(predictions.mean() - target.mean()) < 0.5 * target.std() + 0.05


def test_bad_training_data_is_one_clear_error(registry: Registry, tmp_path: Path) -> None:
    frame = simulate(200, seed=3)
    with pytest.raises(TrainingError, match="no target column 'nope'"):
        _train(registry, frame, tmp_path, target="nope")
    with pytest.raises(TrainingError, match="only 0 and 1"):
        _train(registry, frame.assign(default=frame["default"] * 2), tmp_path)


def test_runs_are_tracked_in_mlflow(
    registry: Registry, settings: Settings, loans: pd.DataFrame, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    tracker = build_tracker(settings)
    result = _train(registry, loans, tmp_path, tracker=tracker)
    assert result.mlflow_run_id is not None
    assert (
        registry.catalog.get_model_version("loan-default", result.version).lineage["mlflow_run_id"]
        == result.mlflow_run_id
    )
    run = MlflowClient(settings.tracking_uri).get_run(result.mlflow_run_id)
    assert run.data.tags["bundle_digest"] == result.bundle_digest
    assert run.data.tags["registry_version"] == str(result.version)
    assert run.data.params["learning_rate"] == "0.003"  # auto: the base rate at batch 256 on CPU
    client = MlflowClient(settings.tracking_uri)
    for name in ("train_loss", "val_loss"):
        history = client.get_metric_history(run.info.run_id, name)
        assert [m.step for m in history] == list(range(result.epochs))
    assert run.info.status == "FINISHED"


def test_unreachable_mlflow_warns_and_training_goes_on(
    registry: Registry, loans: pd.DataFrame, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = MlflowTracker("http://127.0.0.1:9")  # nothing listens on the discard port
    with caplog.at_level(logging.WARNING, logger="tasks.training.tracking"):
        result = _train(registry, loans, tmp_path, tracker=tracker)
    assert result.version == 1 and result.mlflow_run_id is None
    assert "training continues without tracking" in caplog.text
    strict = MlflowTracker("http://127.0.0.1:9", strict=True)
    with pytest.raises(TrackingError, match="strict tracking"):
        _train(registry, loans, tmp_path, tracker=strict)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_trains_on_the_gpu_in_bf16_and_serves_on_cpu(
    registry: Registry, loans: pd.DataFrame, tmp_path: Path
) -> None:
    result = _train(
        registry, loans, tmp_path, fitting=FAST.model_copy(update={"accelerator": "gpu"})
    )
    assert result.lineage["device"] == "cuda"
    expected = "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    assert result.lineage["precision"] == expected
    bundle = load_bundle(registry.get_bytes, result.bundle_digest)
    assert np.isfinite(bundle.predict(loans.head(10))).all()
    assert json.loads(json.dumps(bundle.manifest))["lineage"]["device"] == "cuda"


def test_a_bundle_corrupted_in_the_store_is_refused(
    registry: Registry, loans: pd.DataFrame, tmp_path: Path
) -> None:
    from registry.errors import BundleError

    result = _train(registry, loans, tmp_path)
    manifest = json.loads(registry.get_bytes(result.bundle_digest))
    weights_path = registry.blobs.path_of(manifest["weights"]["digest"])  # type: ignore[attr-defined]  # LocalBlobStore
    weights_path.chmod(0o644)
    data = bytearray(weights_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights_path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="cannot read bundle weights"):
        load_bundle(registry.get_bytes, result.bundle_digest)
