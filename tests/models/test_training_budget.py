"""A fit stops cleanly after the epoch that crosses its time budget, on an injected clock."""

from __future__ import annotations

import itertools

import lightning as L
import numpy as np

from models.budget import TrainingBudget, budget_stop
from models.callbacks import BestWeights
from models.config import TrainingLimits
from models.lightning_module import TabularModule
from models.modules import TabularMLP
from models.tensor_data import TabularDataModule, split_indices


def _fit(budget: TrainingBudget, epochs: int = 10) -> tuple[L.Trainer, BestWeights]:
    rng = np.random.default_rng(0)
    num = rng.normal(size=(600, 3)).astype(np.float32)
    cat = rng.integers(1, 3, size=(600, 1)).astype(np.int64)
    y = (num[:, 0] > 0).astype(np.float32)
    train_idx, val_idx = split_indices(len(y), 0.2, 0)
    L.seed_everything(0, verbose=False)
    module = TabularModule(TabularMLP(3, (3,), (2,), (8,)), "binary")
    data = TabularDataModule(
        num, cat, y, train_index=train_idx, val_index=val_idx, batch_size=128, seed=0
    )
    best = BestWeights()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[best, budget],
    )
    trainer.fit(module, datamodule=data)
    return trainer, best


def test_training_stops_after_the_epoch_that_crosses_its_time_budget() -> None:
    minutes = itertools.count(0, 60)  # each look at the clock: one more simulated minute
    budget = TrainingBudget(TrainingLimits(max_seconds=150), clock=lambda: float(next(minutes)))
    trainer, best = _fit(budget)
    assert trainer.current_epoch == 3  # 1, 2 and 3 minutes: the third crosses 2.5 minutes
    assert budget.stopped == (
        "training stopped at its budget: 2.5 min after epoch 3 of 10 (3.0 min spent)"
    )
    assert best.weights is not None and best.best_epoch <= 2  # the best so far is bundled
    facts = budget_stop(trainer)["training_budget"]
    assert facts["spent_s"] == 180.0 and facts["stopped"] == budget.stopped


def test_a_run_resumed_after_its_budget_stopped_it_stays_stopped() -> None:
    minutes = itertools.count(0, 60)
    first = TrainingBudget(TrainingLimits(max_seconds=60), clock=lambda: float(next(minutes)))
    _fit(first)
    resumed = TrainingBudget(TrainingLimits(max_seconds=60), clock=lambda: 0.0)
    resumed.load_state_dict(first.state_dict())
    trainer, _ = _fit(resumed)
    assert trainer.current_epoch == 0 and resumed.stopped == first.stopped


def test_no_limit_trains_every_epoch_and_a_cpu_spends_no_gpu_seconds() -> None:
    minutes = itertools.count(0, 60)
    budget = TrainingBudget(TrainingLimits(max_gpu_seconds=1.0), clock=lambda: float(next(minutes)))
    trainer, _ = _fit(budget, epochs=4)
    assert trainer.current_epoch == 4 and budget.stopped is None and budget.gpu_s == 0.0
