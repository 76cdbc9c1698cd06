"""Training batches streamed from a Parquet file, row group by row group, never all in memory.

The in-memory path (``models.tensor_data``) moves the whole split to the device once; this one
reads a few row groups at a time, so a dataset larger than memory trains in bounded memory:

- **Split rule.** A row is a validation row when a 64-bit hash of (seed, its global row index
  in the file) falls below ``val_fraction`` (``validation_mask``). It needs no permutation of
  all rows, so it is decided chunk by chunk, and the same rows are validation every epoch. It
  is not ``split_indices`` (a permutation of all rows): the same data and seed give another
  split, hence another model, than the in-memory path; bundles record ``data_path``.
- **Order.** Each epoch visits the row groups in an order seeded by (seed, epoch); rows are
  shuffled within a buffer of a few row groups (``buffer_rows``, sized from the memory budget)
  by a generator seeded by (seed, epoch, rank). Same data and seed give the same batches.
- **Encoding.** Each row group is encoded with the fitted ``Preprocessor`` as it is read.
- **Devices.** On CUDA, ``CudaPrefetcher`` pins each host batch and copies the next one on a
  side stream while the current one trains; elsewhere it yields the batches as they come.
- **DDP.** Rank ``r`` of ``w`` takes row groups ``r, r + w, ...`` of each epoch's order, and
  every rank stops after the same number of batches: a lower bound independent of the order
  (the rows of its ``G // w`` smallest row groups), so collectives stay in step. A few rows
  per epoch are then left out on the larger ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch

from models.preprocessing import Preprocessor
from models.stream_encode import encode, ordered_read_ahead, read_group
from models.tensor_data import OnDeviceBatches

__all__ = [
    "CudaPrefetcher",
    "HostBatch",
    "StreamSplit",
    "StreamingDataModule",
    "TrainStream",
    "ValStream",
    "group_order",
    "validation_mask",
]

HostBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
_T = TypeVar("_T")
_MASK64 = (1 << 64) - 1


def validation_mask(first_row: int, rows: int, seed: int, val_fraction: float) -> np.ndarray:
    """Which of the rows ``first_row .. first_row + rows - 1`` (global indices) are validation
    rows: splitmix64 of (index + a seed-derived offset), as a uniform in [0, 1), < fraction."""
    offset = np.uint64((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _MASK64)
    z = np.arange(first_row, first_row + rows, dtype=np.uint64) + offset
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    uniform = (z >> np.uint64(11)).astype(np.float64) * 2.0**-53
    mask: np.ndarray = uniform < val_fraction
    return mask


def group_order(groups: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits ``groups`` row groups, seeded by (seed, epoch)."""
    order: np.ndarray = np.random.default_rng([seed, epoch, 0x5EED]).permutation(groups)
    return order


@dataclass(frozen=True)
class StreamSplit:
    """A Parquet file's row groups and, per group, its training and validation row counts."""

    path: Path
    columns: tuple[str, ...]
    group_rows: tuple[int, ...]
    train_rows: tuple[int, ...]
    val_rows: tuple[int, ...]
    seed: int
    val_fraction: float

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        """Global index of each row group's first row (computed once: read per chunk)."""
        return tuple(int(x) for x in np.cumsum((0, *self.group_rows[:-1])))

    @property
    def rows(self) -> int:
        return sum(self.group_rows)

    def chunk(self, group: int) -> tuple[pd.DataFrame, np.ndarray]:
        """Row group ``group`` as a frame and its validation mask."""
        frame = read_group(self.path, group, self.columns)
        mask = validation_mask(self.offsets[group], len(frame), self.seed, self.val_fraction)
        return frame, mask


class _Stream:
    def __init__(
        self,
        split: StreamSplit,
        pre: Preprocessor,
        *,
        target: str,
        regression: bool,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.split, self.pre, self.target, self.regression = split, pre, target, regression
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size

    def _encoded(self, groups: Iterable[int], keep_val: bool) -> Iterator[tuple[np.ndarray, ...]]:
        return self._rows(
            groups, keep_val, lambda rows: encode(rows, self.pre, self.target, self.regression)
        )

    def _rows(
        self, groups: Iterable[int], keep_val: bool, fn: Callable[[pd.DataFrame], _T]
    ) -> Iterator[_T]:
        """``fn`` of each row group's validation (or training) rows, in the order of
        ``groups``; a group with none of them is skipped."""

        def one(group: int) -> _T | None:
            frame, val = self.split.chunk(int(group))
            keep = val if keep_val else ~val
            return fn(frame[keep]) if keep.any() else None

        # Row groups are read and encoded on worker threads, ahead of the training step and in
        # order (pyarrow and numpy release the GIL for most of it): the encoding, not the
        # GPU, set the pace of a streamed epoch.
        for out in ordered_read_ahead(one, groups):
            if out is not None:
                yield out


class TrainStream(_Stream):
    """One epoch's training batches: shuffled row groups, rows shuffled within a buffer."""

    def __init__(
        self, *args: Any, seed: int, buffer_rows: int, epoch: Callable[[], int], **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self.seed, self.buffer_rows, self.epoch = seed, max(1, buffer_rows), epoch

    def __len__(self) -> int:
        rows = self.split.train_rows
        if self.world_size == 1:
            return -(-sum(rows) // self.batch_size)
        per_rank = len(rows) // self.world_size
        return max(1, sum(sorted(rows)[:per_rank]) // self.batch_size)

    def __iter__(self) -> Iterator[HostBatch]:
        epoch = self.epoch()
        order = group_order(len(self.split.group_rows), self.seed, epoch)
        order = order[self.rank :: self.world_size]
        rng = np.random.default_rng([self.seed, epoch, self.rank])
        limit = len(self)
        done = 0
        pending: list[tuple[np.ndarray, ...]] = []
        held = 0
        chunks = self._encoded(order, keep_val=False)
        for chunk in _with_end(chunks):  # None marks the end: flush the buffer
            if chunk is not None:
                pending.append(chunk)
                held += len(chunk[0])
                if held < self.buffer_rows:
                    continue
            if not pending:
                break
            num, cat, y = (np.concatenate(parts) for parts in zip(*pending, strict=True))
            perm = rng.permutation(len(num))
            full = len(num) if chunk is None else len(num) - len(num) % self.batch_size
            for start in range(0, full, self.batch_size):
                if done == limit:
                    return
                idx = perm[start : start + self.batch_size]
                yield (
                    torch.from_numpy(num[idx]),
                    torch.from_numpy(cat[idx]),
                    torch.from_numpy(y[idx]),
                )
                done += 1
            rest = perm[full:]
            pending = [(num[rest], cat[rest], y[rest])] if len(rest) else []
            held = len(rest)


def _with_end(chunks: Iterator[tuple[np.ndarray, ...]]) -> Iterator[tuple[np.ndarray, ...] | None]:
    yield from chunks
    yield None


class ValStream(_Stream):
    """The validation rows, row group by row group in file order (this rank's stride)."""

    def groups(self) -> range:
        return range(self.rank, len(self.split.group_rows), self.world_size)

    def __len__(self) -> int:
        rows = self.split.val_rows
        return sum(-(-rows[g] // self.batch_size) for g in self.groups())

    def __iter__(self) -> Iterator[HostBatch]:
        for num, cat, y in self._encoded(self.groups(), keep_val=True):
            for start in range(0, len(num), self.batch_size):
                part = slice(start, start + self.batch_size)
                yield (
                    torch.from_numpy(num[part]),
                    torch.from_numpy(cat[part]),
                    torch.from_numpy(y[part]),
                )

    def arrays(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(numeric, codes, target in the data's own units) per row group's validation rows."""

        def arrays(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            num, cat = self.pre.transform(rows)
            return num, cat, rows[self.target].to_numpy(dtype=np.float64)

        return self._rows(self.groups(), True, arrays)


class CudaPrefetcher:
    """Host batches moved to ``device``: on CUDA each batch is copied into one of two pinned
    staging buffers, allocated once, and from there to the device on a side stream
    (non-blocking) while the current batch trains; on any other device it is unchanged.

    Pinning each batch afresh cost more than the copy it sped up (a pinned allocation per
    tensor); two reused buffers, each reused only once its last copy has finished, do not.
    """

    def __init__(self, batches: Iterable[HostBatch], device: torch.device) -> None:
        self.batches, self.device = batches, device

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]  # the streams above are sized

    def __iter__(self) -> Iterator[HostBatch]:
        if self.device.type != "cuda":
            yield from self.batches
            return
        side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]  # torch's stub
        source = iter(self.batches)
        staging: list[list[torch.Tensor]] = [[], []]
        copied: list[torch.cuda.Event | None] = [None, None]
        slot = 0

        def load() -> HostBatch | None:
            nonlocal slot
            host = next(source, None)
            if host is None:
                return None
            buffers, finished = staging[slot], copied[slot]
            if finished is not None:
                finished.synchronize()  # this buffer's last copy to the device is done
            if [(b.shape, b.dtype) for b in buffers] != [(t.shape, t.dtype) for t in host]:
                buffers = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in host]
                staging[slot] = buffers
            for buffer, tensor in zip(buffers, host, strict=True):
                buffer.copy_(tensor)
            with torch.cuda.stream(side):
                moved = tuple(b.to(self.device, non_blocking=True) for b in buffers)
                event = torch.cuda.Event()  # type: ignore[no-untyped-call]  # torch stub
                event.record(side)
            copied[slot] = event
            slot ^= 1
            return moved  # type: ignore[return-value]  # a 3-tuple

        upcoming = load()
        while upcoming is not None:
            main = torch.cuda.current_stream(self.device)
            main.wait_stream(side)
            current = upcoming
            for t in current:
                t.record_stream(main)  # the side stream allocated it; the main one uses it
            upcoming = load()
            yield current


class StreamingDataModule(OnDeviceBatches):
    """Training and validation batches streamed from ``split``'s Parquet file (moved by the
    prefetcher, so Lightning's own transfer is skipped)."""

    def __init__(
        self,
        split: StreamSplit,
        pre: Preprocessor,
        *,
        target: str,
        regression: bool,
        batch_size: int,
        seed: int,
        buffer_rows: int,
    ) -> None:
        super().__init__()
        self.split, self.pre, self.target, self.regression = split, pre, target, regression
        self.batch_size, self.seed, self.buffer_rows = batch_size, seed, buffer_rows
        self.device = torch.device("cpu")

    def setup(self, stage: str) -> None:
        if self.trainer is not None:
            self.device = self.trainer.strategy.root_device

    def _ranks(self) -> dict[str, int]:
        trainer = self.trainer
        return {
            "rank": trainer.global_rank if trainer else 0,
            "world_size": trainer.world_size if trainer else 1,
        }

    def train_dataloader(self) -> CudaPrefetcher:
        trainer = self.trainer
        stream = TrainStream(
            self.split,
            self.pre,
            target=self.target,
            regression=self.regression,
            batch_size=self.batch_size,
            seed=self.seed,
            buffer_rows=self.buffer_rows,
            epoch=(lambda: trainer.current_epoch) if trainer else (lambda: 0),
            **self._ranks(),
        )
        return CudaPrefetcher(stream, self.device)

    def val_dataloader(self) -> CudaPrefetcher:
        stream = self.val_stream(max(self.batch_size, 8192), **self._ranks())
        return CudaPrefetcher(stream, self.device)

    def val_stream(self, batch_size: int, rank: int = 0, world_size: int = 1) -> ValStream:
        return ValStream(
            self.split,
            self.pre,
            target=self.target,
            regression=self.regression,
            batch_size=batch_size,
            rank=rank,
            world_size=world_size,
        )
