"""The thin LightningModule: a loss and an optimiser around the plain ``TabularMLP``."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from torch import nn

from models.modules import TabularMLP

__all__ = ["TabularModule", "Task"]

Task = Literal["binary", "regression"]


class TabularModule(L.LightningModule):
    """Binary classification (BCE with logits) or regression (MSE on a standardised target)."""

    def __init__(
        self,
        net: TabularMLP,
        task: Task,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        # The net is an nn.Module (saved in the state dict), so it is kept out of hparams.
        self.save_hyperparameters(ignore=["net"])
        self.automatic_optimization = False
        self.net = net
        self.task = task
        self.loss_fn: nn.Module = nn.BCEWithLogitsLoss() if task == "binary" else nn.MSELoss()
        self._loss_sum = torch.zeros(())
        self._rows = 0

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(numeric, categorical)
        return out

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        numeric, categorical, target = batch
        # The loss is computed in float32 even under bf16 autocast, for a stable gradient.
        out = self(numeric, categorical).float()
        loss: torch.Tensor = self.loss_fn(out, target)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        # Manual optimisation: the same zero_grad/backward/step, minus the closure and hook
        # round-trips of automatic optimisation that cost more than a small model's step.
        # manual_backward keeps mixed precision and DDP gradient sync working.
        optimizer = self.optimizers()
        assert isinstance(optimizer, L.pytorch.core.optimizer.LightningOptimizer)
        optimizer.zero_grad(set_to_none=True)
        loss = self._loss(batch)
        self.manual_backward(loss)
        optimizer.step()
        # Summed on the device and logged once per epoch: a self.log() per step costs more
        # than the step itself for models this small.
        rows = len(batch[0])
        self._loss_sum = self._loss_sum + loss.detach() * rows
        self._rows += rows
        return loss

    def on_train_epoch_start(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._rows = 0

    def on_validation_epoch_start(self) -> None:
        # Validation runs once the epoch's training steps are done; logging here (rather than
        # in on_train_epoch_end, which runs after the callbacks') lets EpochMetrics see it.
        if self._rows and not self.trainer.sanity_checking:
            self.log("train_loss", self._loss_sum / self._rows, sync_dist=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss = self._loss(batch)
        self.log(
            "val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(batch[0])
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(),
            lr=self.hparams["learning_rate"],
            weight_decay=self.hparams["weight_decay"],
        )
