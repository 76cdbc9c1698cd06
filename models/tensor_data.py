"""Training data held as tensors on the training device, batched without a DataLoader.

A ``DataLoader`` collates every batch on the host; for small tabular rows that host work, not
the GPU, sets the pace. Here the whole split is moved to the device once in ``setup`` and each
epoch is a seeded permutation sliced into batches. Under DDP every rank takes its own stride
of the same permutation, so several GPUs need no code change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import numpy as np
import torch

__all__ = ["Batch", "DeviceBatches", "OnDeviceBatches", "TabularDataModule", "split_indices"]

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class DeviceBatches:
    """Batches of (numeric, categorical, target) sliced from tensors already on the device."""

    def __init__(
        self,
        tensors: Batch,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        epoch: Callable[[], int] = lambda: 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = epoch
        self.rank = rank
        self.world_size = world_size
        rows = len(tensors[0])
        # Every rank sees the same number of rows so DDP's collectives stay in step.
        self.rows_per_rank = rows // world_size if world_size > 1 else rows

    def __len__(self) -> int:
        return -(-self.rows_per_rank // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        device = self.tensors[0].device
        if self.shuffle:
            # Seeded by (seed, epoch): a resumed run shuffles epoch k as the first run would.
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch())
            order = torch.randperm(len(self.tensors[0]), generator=gen).to(device)
        else:
            order = torch.arange(len(self.tensors[0]), device=device)
        if self.world_size > 1:
            order = order[self.rank :: self.world_size][: self.rows_per_rank]
        for start in range(0, self.rows_per_rank, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield tuple(t.index_select(0, idx) for t in self.tensors)  # type: ignore[misc]  # a 3-tuple by construction


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, validation) row indices, each sorted; at least one row in each."""
    if n < 2:
        raise ValueError("at least two rows are needed to split training and validation")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class OnDeviceBatches(L.LightningDataModule):
    """A datamodule whose batches already sit on the training device: Lightning's generic
    transfer (a walk over the batch's collection) is skipped for them, which saves a measurable
    share of each small step."""

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        if isinstance(batch, tuple) and all(
            isinstance(t, torch.Tensor) and t.device == device for t in batch
        ):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)


class TabularDataModule(OnDeviceBatches):
    """Train/validation splits as device tensors; moved once when the trainer knows its device."""

    def __init__(
        self,
        numeric: np.ndarray,
        categorical: np.ndarray,
        target: np.ndarray,
        *,
        train_index: np.ndarray,
        val_index: np.ndarray,
        batch_size: int,
        seed: int,
        val_batch_size: int = 8192,
    ) -> None:
        super().__init__()
        self.train_index, self.val_index = train_index, val_index
        self._host: Batch = (
            torch.from_numpy(np.ascontiguousarray(numeric, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(categorical, dtype=np.int64)),
            torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32)),
        )
        self.batch_size = batch_size
        self.val_batch_size = max(batch_size, val_batch_size)
        self.seed = seed
        self._train: Batch | None = None
        self._val: Batch | None = None

    def split(self, which: str) -> Batch:
        """Host tensors of the ``train`` or ``val`` split."""
        index = torch.from_numpy(self.train_index if which == "train" else self.val_index)
        return tuple(t.index_select(0, index) for t in self._host)  # type: ignore[return-value]  # 3-tuple

    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        self._train = tuple(t.to(device) for t in self.split("train"))  # type: ignore[assignment]  # 3-tuple
        self._val = tuple(t.to(device) for t in self.split("val"))  # type: ignore[assignment]  # 3-tuple

    def train_dataloader(self) -> DeviceBatches:
        assert self._train is not None, "setup() runs before the loaders are asked for"
        trainer = self.trainer
        return DeviceBatches(
            self._train,
            self.batch_size,
            shuffle=True,
            seed=self.seed,
            epoch=(lambda: trainer.current_epoch) if trainer else (lambda: 0),
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
        )

    def val_dataloader(self) -> DeviceBatches:
        assert self._val is not None, "setup() runs before the loaders are asked for"
        trainer = self.trainer
        return DeviceBatches(
            self._val,
            self.val_batch_size,
            shuffle=False,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
        )
