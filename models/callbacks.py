"""Small Lightning callbacks: keep the best weights, report progress, forward epoch metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch

__all__ = ["BestWeights", "EpochMetrics", "ProgressCallback"]


class BestWeights(L.Callback):
    """Copy of the net's weights at the best ``monitor`` value, saved in checkpoints too.

    Early stopping ends training ``patience`` epochs after the best epoch; the bundle must hold
    the best weights, and a resumed run must remember them, hence the checkpointed state.
    """

    def __init__(self, monitor: str = "val_loss") -> None:
        self.monitor = monitor
        self.best: float = float("inf")
        self.best_epoch: int = -1
        self.weights: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        current = float(value)
        if current < self.best:
            self.best, self.best_epoch = current, trainer.current_epoch
            net = pl_module.net  # the plain TabularMLP the module wraps
            assert isinstance(net, torch.nn.Module)
            self.weights = {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "weights": self.weights}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = float(state_dict["best"])
        self.best_epoch = int(state_dict["best_epoch"])
        self.weights = state_dict["weights"]


class EpochMetrics(L.Callback):
    """Hands each epoch's logged metrics (train_loss, val_loss, ...) to ``log(metrics, epoch)``."""

    def __init__(self, log: Callable[[Mapping[str, float], int], None]) -> None:
        self.sink = log

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        if metrics and trainer.is_global_zero:
            self.sink(metrics, trainer.current_epoch)


class ProgressCallback(L.Callback):
    """Reports the share of planned batches done to ``report(fraction)`` (e.g. Prefect)."""

    def __init__(self, report: Callable[[float], None]) -> None:
        self.report = report

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        per_epoch = max(1, int(trainer.num_training_batches))
        done = trainer.current_epoch + (batch_idx + 1) / per_epoch
        if trainer.is_global_zero:
            self.report(done / max(1, trainer.max_epochs or 1))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.report(1.0)
