"""The thin LightningModule: a loss and an optimiser around the plain ``TabularMLP``.

On one CUDA device each full-size training step is replayed as a CUDA graph
(``models.graph_step``) unless ``cuda_graphs`` is off; on CPU, and for what cannot be
captured, the step runs eagerly through Lightning's optimizer and precision plugin.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from models.graph_step import GraphCaptureError, GraphedStep
from models.modules import TabularMLP

__all__ = ["TabularModule", "Task"]

Task = Literal["binary", "regression"]

_GRAPH_PRECISIONS = frozenset({"32-true", "32", "bf16-mixed"})


class TabularModule(L.LightningModule):
    """Binary classification (BCE with logits) or regression (MSE on a standardised target)."""

    def __init__(
        self,
        net: TabularMLP,
        task: Task,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
        *,
        cuda_graphs: bool = False,
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
        self._graph: GraphedStep | None = None
        self._graph_wanted = cuda_graphs

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
        loss = self._graphed(batch)
        if loss is None:
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

    def _graphed(self, batch: Any) -> torch.Tensor | None:
        """The step replayed as a CUDA graph, or None where it runs eagerly: off, not on a
        single CUDA device, a precision that needs a gradient scaler, a batch of another shape
        (the last of an epoch), or a capture that failed (said once, then eager)."""
        if not self._graph_wanted:
            return None
        if self._graph is None:
            trainer = self.trainer
            if (
                self.device.type != "cuda"
                or trainer.world_size != 1
                or str(trainer.precision) not in _GRAPH_PRECISIONS
            ):
                self._graph_wanted = False
                return None
            optimizer = self.optimizers()
            assert isinstance(optimizer, L.pytorch.core.optimizer.LightningOptimizer)
            self._graph = GraphedStep(self._raw_step, optimizer.optimizer)
        if not self._graph.fits(batch):
            return None
        try:
            return self._graph(batch)
        except GraphCaptureError as exc:
            rank_zero_warn(f"training step not captured as a CUDA graph ({exc}); training eagerly")
            self._graph_wanted, self._graph = False, None
            return None

    def _raw_step(self, batch: Any) -> torch.Tensor:
        """Forward, loss, backward and optimiser step with no host work: what a graph holds."""
        numeric, categorical, target = batch
        bf16 = str(self.trainer.precision) == "bf16-mixed"
        # Cached casts cannot live in a graph; the loss stays float32 as in ``_loss``.
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16, cache_enabled=False):
            out = self.net(numeric, categorical)
        loss: torch.Tensor = self.loss_fn(out.float(), target)
        loss.backward()  # type: ignore[no-untyped-call]  # untyped in torch
        assert self._graph is not None
        self._graph.optimizer.step()
        return loss.detach()

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
        # On CUDA the fused kernel (one launch per step), capturable: its step count stays on
        # the device, as a CUDA graph needs. CPU keeps the default implementation and results.
        cuda = self.device.type == "cuda"
        return torch.optim.AdamW(
            self.parameters(),
            lr=self.hparams["learning_rate"],
            weight_decay=self.hparams["weight_decay"],
            fused=True if cuda else None,
            capturable=cuda,
        )
