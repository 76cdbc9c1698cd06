"""A training run that stops cleanly at its budget of time or GPU-seconds.

``TrainingBudget`` checks after each training epoch (its validation included) how long the fit
has run; once that crosses ``max_seconds``, or the GPU time crosses ``max_gpu_seconds``, it
sets ``trainer.should_stop``: the fit ends after that epoch, and the best weights so far
(``BestWeights``) are what gets bundled. GPU time is the fit's wall time while it runs on a
CUDA device (zero on a CPU). The time spent is checkpointed, so a resumed run counts the time
it had spent before, and a run that had stopped stays stopped. ``stopped`` holds the line that
says so, e.g. ``training stopped at its budget: 10.0 min after epoch 7 of 20``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning as L

from models.config import TrainingLimits

__all__ = ["TrainingBudget", "budget_stop"]


class TrainingBudget(L.Callback):
    """Stops the fit after the epoch that crosses its ``limits`` (see the module doc)."""

    def __init__(self, limits: TrainingLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self.spent_s = 0.0
        self.gpu_s = 0.0
        self.stopped: str | None = None
        self._since = 0.0
        self._on_gpu = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._since = self.clock()
        self._on_gpu = str(trainer.strategy.root_device.type) == "cuda"
        if self.stopped is not None:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        now = self.clock()
        step, self._since = max(0.0, now - self._since), now
        self.spent_s += step
        self.gpu_s += step if self._on_gpu else 0.0
        if self.stopped is not None:
            return
        over = self._crossed()
        if over is None:
            return
        trainer.should_stop = True
        epoch, planned = trainer.current_epoch + 1, trainer.max_epochs
        self.stopped = (
            f"training stopped at its budget: {over} after epoch {epoch} of {planned} "
            f"({_minutes(self.spent_s)} spent)"
        )

    def _crossed(self) -> str | None:
        wall, gpu = self.limits.max_seconds, self.limits.max_gpu_seconds
        if wall is not None and self.spent_s >= wall:
            return _minutes(wall)
        if gpu is not None and self._on_gpu and self.gpu_s >= gpu:
            return f"{gpu:g} GPU-seconds"
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"spent_s": self.spent_s, "gpu_s": self.gpu_s, "stopped": self.stopped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.spent_s = float(state_dict.get("spent_s", 0.0))
        self.gpu_s = float(state_dict.get("gpu_s", 0.0))
        stopped = state_dict.get("stopped")
        self.stopped = None if stopped is None else str(stopped)


def budget_stop(trainer: L.Trainer) -> dict[str, Any]:
    """``{"training_budget": {...}}`` for a fit that had a budget (its limits, time spent and
    the stop line when it stopped there), else ``{}``: facts for the version's lineage."""
    for callback in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(callback, TrainingBudget):
            return {
                "training_budget": {
                    "max_seconds": callback.limits.max_seconds,
                    "max_gpu_seconds": callback.limits.max_gpu_seconds,
                    "spent_s": round(callback.spent_s, 3),
                    "gpu_s": round(callback.gpu_s, 3),
                    "stopped": callback.stopped,
                }
            }
    return {}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 6 else f"{seconds:.3g} s"
