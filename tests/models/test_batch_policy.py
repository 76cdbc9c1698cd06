"""The batch and learning-rate policy per device, and the CUDA-graph training step.

The GPU tests run only where CUDA is (marker ``gpu``); the policy's arithmetic and what a CPU
run records are checked everywhere.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from models.config import (
    BASE_LEARNING_RATE,
    CPU_BATCH_SIZE,
    TrainingConfig,
    resolve_batch_size,
    resolve_learning_rate,
)
from models.tensor_data import TabularDataModule, split_indices


def test_the_cpu_keeps_its_fastest_batch_whatever_the_data() -> None:
    auto = TrainingConfig()
    for rows in (100, 800_000, 16_000_000):
        assert resolve_batch_size(auto, rows, gpu=False) == CPU_BATCH_SIZE
    assert resolve_learning_rate(auto, CPU_BATCH_SIZE) == BASE_LEARNING_RATE


def test_on_a_gpu_the_batch_grows_with_the_data_and_the_rate_with_it() -> None:
    auto = TrainingConfig()
    assert resolve_batch_size(auto, 10_000, gpu=True) == 1024  # never below the CPU batch
    assert resolve_batch_size(auto, 800_000, gpu=True) == 8192  # 12,500 rows / 64 steps
    assert resolve_batch_size(auto, 16_000_000, gpu=True) == 65_536  # the ceiling
    assert resolve_learning_rate(auto, 4096) == pytest.approx(BASE_LEARNING_RATE * 4)
    assert resolve_learning_rate(auto, 65_536) == pytest.approx(BASE_LEARNING_RATE * 8)  # capped


def test_a_spec_that_pins_batch_and_rate_keeps_them_on_every_device() -> None:
    pinned = TrainingConfig(batch_size=512, learning_rate=0.01)
    assert resolve_batch_size(pinned, 16_000_000, gpu=True) == 512
    assert resolve_learning_rate(pinned, 512) == 0.01
    # A pinned batch with an automatic rate: the rate follows the batch.
    half = TrainingConfig(batch_size=4096)
    assert resolve_learning_rate(half, 4096) == pytest.approx(BASE_LEARNING_RATE * 4)


def test_auto_and_numbers_are_the_only_values_a_spec_may_give() -> None:
    from pydantic import ValidationError

    assert TrainingConfig.model_validate({"batch_size": "auto"}).batch_size == "auto"
    for bad in ({"batch_size": 0}, {"batch_size": "big"}, {"learning_rate": -1.0}):
        with pytest.raises(ValidationError):
            TrainingConfig.model_validate(bad)


def test_a_cpu_run_records_the_batch_and_rate_it_used_and_is_reproducible() -> None:
    from models.config import ModelConfig
    from retrain.config.settings import Settings
    from retrain.config.wiring import build_registry
    from tasks.data.simulator import simulate
    from tasks.training.fit import train_model
    from tasks.training.plan import TrainingRun, loans_plan

    frame = simulate(3000, seed=4)
    plan = loans_plan(
        "policy",
        architecture=ModelConfig(hidden_sizes=(16,)),
        fitting=TrainingConfig(max_epochs=2, accelerator="cpu"),
    )
    digests = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as home:
            registry = build_registry(Settings(home=Path(home)))
            result = train_model(registry, frame, plan, TrainingRun(checkpoint_root=Path(home)))
            registry.close()
        digests.append(result.bundle_digest)
        training = result.lineage["hyperparameters"]["training"]
        assert (training["batch_size"], training["learning_rate"]) == (1024, BASE_LEARNING_RATE)
        assert result.train_rows_per_s > 0
        assert set(result.phases) == {"prepare", "fit", "score", "store"}
    assert digests[0] == digests[1]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_cuda_graph_step_trains_like_the_eager_step() -> None:
    import lightning as L

    from models.callbacks import BestWeights
    from models.lightning_module import TabularModule
    from models.modules import TabularMLP

    rng = np.random.default_rng(0)
    num = rng.normal(size=(40_000, 8)).astype(np.float32)
    cat = rng.integers(1, 4, size=(40_000, 2)).astype(np.int64)
    y = (num[:, 0] + 0.5 * (cat[:, 0] == 2) > 0).astype(np.float32)
    train_idx, val_idx = split_indices(len(y), 0.2, 0)
    losses = {}
    for graphs in (False, True):
        L.seed_everything(0, verbose=False)
        net = TabularMLP(8, (4, 4), (3, 3), (32,), dropout=0.1)
        module = TabularModule(net, "binary", learning_rate=0.01, cuda_graphs=graphs)
        data = TabularDataModule(
            num, cat, y, train_index=train_idx, val_index=val_idx, batch_size=4096, seed=0
        )
        best = BestWeights()
        trainer = L.Trainer(
            accelerator="gpu",
            devices=1,
            precision="bf16-mixed",
            max_epochs=12,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            num_sanity_val_steps=0,
            callbacks=[best],
        )
        trainer.fit(module, datamodule=data)
        graph = module._graph
        assert (graph is not None and graph.captured) is graphs
        losses[graphs] = best.best
    assert losses[True] < 0.6  # it learned (chance is 0.69), and as much as the eager run
    assert abs(losses[True] - losses[False]) < 0.05
