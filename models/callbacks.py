"""Small Lightning callbacks: keep the best weights, seed each epoch, stop early resumably,
report progress, forward epoch metrics.

A run resumed from its last checkpoint must end with the bundle an uninterrupted run gives, so
every piece of state that decides the result is either checkpointed (best weights, early
stopping) or a function of the epoch number alone (the random stream, like the shuffle).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

__all__ = [
    "BestWeights",
    "EpochMetrics",
    "EpochSeed",
    "ProgressCallback",
    "ResumableEarlyStopping",
    "StepThroughput",
]


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


class EpochSeed(L.Callback):
    """Seeds torch's generators from (seed, epoch) as each training epoch starts.

    Dropout draws from the global generator, whose state a checkpoint does not hold: carried
    over from epoch to epoch, a resumed run would draw other masks and train another model.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        entropy = np.random.SeedSequence([self.seed, trainer.current_epoch]).generate_state(1)
        torch.manual_seed(int(entropy[0]))


class ResumableEarlyStopping(EarlyStopping):
    """Lightning's early stopping, which also stays stopped when resumed.

    Its counters are checkpointed, but the trainer's stop flag is not: a run that had stopped,
    then failed before its bundle was stored, would otherwise train one epoch more on resume.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stopping_reason != EarlyStoppingReason.NOT_STOPPED:
            trainer.should_stop = True


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


class StepThroughput(L.Callback):
    """Rows per second of the training steps alone: from each epoch's first batch to its last
    batch's end, validation and checkpoints excluded. The device is synchronised at those two
    points only, so measuring adds no per-step host work."""

    def __init__(self) -> None:
        self.rows = 0
        self.seconds = 0.0
        self._started: float | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx == 0:
            _synchronize(pl_module)
            self._started = time.perf_counter()
        self.rows += len(batch[0])

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._started is not None and batch_idx + 1 >= trainer.num_training_batches:
            _synchronize(pl_module)
            self.seconds += time.perf_counter() - self._started
            self._started = None


def _synchronize(module: L.LightningModule) -> None:
    if module.device.type == "cuda":
        torch.cuda.synchronize(module.device)
