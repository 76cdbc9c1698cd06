"""The data and network side of a training run: arrays, the run's identity, the seeded net.

Everything here decides what the trained model is, so this file is part of the code digest
(``tasks.training.lineage``). Imported only when a model trains: it loads torch and Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import pandas as pd

from models.config import (
    TrainingConfig,
    resolve_batch_size,
    resolve_learning_rate,
    uses_gpu,
)
from models.lightning_module import TabularModule
from models.modules import TabularMLP, embedding_dims_for
from models.preprocessing import Preprocessor, target_values
from models.tensor_data import TabularDataModule, split_indices
from tasks.training.lineage import code_lineage, inputs_digest
from tasks.training.plan import TrainingPlan

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = [
    "RunIdentity",
    "TrainingArrays",
    "build_datamodule",
    "build_network",
    "effective_plan",
    "encode_training_data",
    "run_identity",
    "training_frame",
]


@dataclass(frozen=True)
class TrainingArrays:
    """The frame as model inputs: the fitted preprocessor, the encoded arrays and the split."""

    frame: pd.DataFrame
    preprocessor: Preprocessor
    numeric: np.ndarray
    categorical: np.ndarray
    target: np.ndarray  # in the frame's units: validation metrics are reported in these
    fit_target: np.ndarray  # what the net learns: the target standardised for regression
    train_index: np.ndarray
    val_index: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.frame)


@dataclass(frozen=True)
class RunIdentity:
    """What names a run's inputs: it keys the checkpoints and goes into the bundle manifest."""

    dataset_digest: str
    inputs_digest: str
    code: Mapping[str, Any]  # code digest, git commit and library versions


def training_frame(
    registry: Registry, data: pd.DataFrame | str, dataset_digest: str | None
) -> tuple[pd.DataFrame, str | None]:
    """The frame to train on and its snapshot digest; a string ``data`` names a snapshot."""
    if isinstance(data, str):
        from tasks.data.snapshots import read_snapshot

        return read_snapshot(registry, data), data
    return data, dataset_digest


def encode_training_data(frame: pd.DataFrame, plan: TrainingPlan) -> TrainingArrays:
    """Split ``frame`` (seeded) and encode it with a preprocessor fitted on the training rows
    only, so that no validation row leaks into the vocabularies or the scaling."""
    fitting = plan.fitting
    regression = plan.task == "regression"
    y = target_values(frame, plan.target, plan.task)
    train_idx, val_idx = split_indices(len(frame), fitting.val_fraction, fitting.seed)
    pre = Preprocessor.fit(
        frame.iloc[train_idx],
        plan.numeric,
        plan.categorical,
        max_categories=plan.architecture.max_categories,
        target=y[train_idx] if regression else None,
    )
    num, cat = pre.transform(frame)
    y_fit = (y - pre.target_mean) / pre.target_std if regression else y
    return TrainingArrays(frame, pre, num, cat, y, y_fit, train_idx, val_idx)


def run_identity(plan: TrainingPlan, dataset_digest: str) -> RunIdentity:
    """Digest of everything that decides the trained model: data, plan and code. The run
    descriptor (tracker, actor, run ids) is left out: it never changes the bundle."""
    code = code_lineage()
    key = inputs_digest(
        {
            "dataset": dataset_digest,
            "target": plan.target,
            "task": plan.task,
            "numeric": list(plan.numeric),
            "categorical": list(plan.categorical),
            "model": plan.architecture.model_dump(mode="json"),
            "training": plan.fitting.model_dump(mode="json"),
            "code": code["code_digest"],
        }
    )
    return RunIdentity(dataset_digest, key, code)


def effective_plan(plan: TrainingPlan, *, train_rows: int) -> TrainingPlan:
    """``plan`` with a concrete batch size and learning rate for ``train_rows`` rows on the
    device this run trains on (``models.config.resolve_batch_size``): what the bundle's
    lineage records. The spec's own plan (``auto`` included) keeps naming the run."""
    fitting = plan.fitting
    batch = resolve_batch_size(fitting, train_rows, gpu=uses_gpu(fitting.accelerator))
    return plan.with_fitting(batch_size=batch, learning_rate=resolve_learning_rate(fitting, batch))


def build_network(plan: TrainingPlan, pre: Preprocessor) -> tuple[TabularMLP, TabularModule]:
    """The net sized for ``pre``'s features and the Lightning module that trains it.

    Seeding comes first and the net is built right after, so its initial weights are the first
    draws from the seeded generators: the same seed gives the same weights.
    """
    arch, fitting = plan.architecture, plan.fitting
    L.seed_everything(fitting.seed, workers=True, verbose=False)
    net = TabularMLP(
        n_numeric=len(pre.numeric),
        cardinalities=pre.cardinalities,
        embedding_dims=embedding_dims_for(
            pre.cardinalities, fixed=arch.embedding_dim, maximum=arch.max_embedding_dim
        ),
        hidden_sizes=arch.hidden_sizes,
        dropout=arch.dropout,
        activation=arch.activation,
    )
    module = TabularModule(
        net,
        plan.task,  # type: ignore[arg-type]  # checked by target_values
        _concrete(fitting.learning_rate, "learning_rate"),
        fitting.weight_decay,
        cuda_graphs=fitting.cuda_graphs,
    )
    return net, module


def _concrete(value: float | str, name: str) -> float:
    if isinstance(value, str):
        raise TypeError(f"training.{name} is {value!r}: resolve the plan with effective_plan")
    return value


def build_datamodule(arrays: TrainingArrays, fitting: TrainingConfig) -> TabularDataModule:
    """Train and validation batches of the encoded arrays, shuffled by the plan's seed."""
    return TabularDataModule(
        arrays.numeric,
        arrays.categorical,
        arrays.fit_target,
        train_index=arrays.train_index,
        val_index=arrays.val_index,
        batch_size=int(_concrete(fitting.batch_size, "batch_size")),
        seed=fitting.seed,
        val_batch_size=65_536 if uses_gpu(fitting.accelerator) else 8192,
    )
