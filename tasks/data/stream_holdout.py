"""The holdout split of ``tasks.data.holdout.split_holdout``, streamed.

The in-memory split takes the latest ``round(rows * fraction)`` rows by ``event_time`` (a
stable sort: among equal times the later rows), or a seeded random share without a time
column; both parts keep the original row order. Streamed, the same rows are found as:

1. the time threshold: the key at sorted position ``rows - holdout`` found by a radix
   selection over the time column alone (four reads of one column, 65,536 counters);
2. one pass over all columns that writes the batch, training and holdout snapshots at once:
   a row is holdout when its time is after the threshold, or equal to it and among the last
   tied rows.

Without a time column the seeded permutation of the in-memory split is drawn as is, which
takes 9 bytes per row for the moment it is drawn (the rest stays batch-bounded).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from registry.errors import ConfigError
from tasks.data.holdout import holdout_rows
from tasks.data.snapshots import Snapshot
from tasks.data.sources import EVENT_TIME
from tasks.data.stream_io import BATCH_ROWS, iter_parquet_batches, parquet_columns, parquet_rows
from tasks.data.stream_snapshot import SnapshotWriter, spool

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["StreamedSplit", "split_holdout_streaming"]

_U64 = npt.NDArray[np.uint64]
_SIGN = np.uint64(1 << 63)
_BITS = 16


@dataclass(frozen=True)
class StreamedSplit:
    """The snapshots one streamed pass wrote: all rows (if asked), training, holdout."""

    batch: Snapshot | None
    training: Snapshot
    holdout: Snapshot


def split_holdout_streaming(
    registry: Registry,
    source: Path,
    fraction: float,
    *,
    training_name: str,
    holdout_name: str,
    batch_name: str | None = None,
    time_column: str = EVENT_TIME,
    seed: int = 0,
    batch_rows: int = BATCH_ROWS,
    transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    spool_dir: Path | None = None,
) -> StreamedSplit:
    """Snapshot ``source`` split into training and holdout (and, with ``batch_name``, the
    whole batch), with the digests ``split_holdout`` + ``take_snapshot`` would give.
    ``transform`` (row-wise, keeping the time column) maps each batch before it is stored,
    as if the whole frame had been transformed before the split."""
    names = [n for n in (batch_name, training_name, holdout_name) if n is not None]
    with spool(spool_dir) as folder:
        writers = [SnapshotWriter(folder / f"{i}.parquet") for i in range(len(names))]
        whole, train, hold = (writers[0] if batch_name else None), writers[-2], writers[-1]
        holdout_of = holdout_masks(source, fraction, time_column, seed, batch_rows)
        for frame in iter_parquet_batches(source, batch_rows=batch_rows):
            mask = holdout_of(frame)
            frame = transform(frame) if transform is not None else frame
            if whole is not None:
                whole.add(frame)
            train.add(frame[~mask].reset_index(drop=True))
            hold.add(frame[mask].reset_index(drop=True))
        stored = [w.store(registry, n) for n, w in zip(names, writers, strict=True)]
    return StreamedSplit(
        batch=stored[0] if batch_name else None, training=stored[-2], holdout=stored[-1]
    )


def holdout_masks(
    source: Path, fraction: float, time_column: str, seed: int, batch_rows: int
) -> Callable[[pd.DataFrame], npt.NDArray[np.bool_]]:
    """A function of each successive batch of ``source`` (all its rows, in order, in batches
    of any size) that says which of its rows are holdout."""
    total = parquet_rows(source)
    n_hold = holdout_rows(total, fraction)
    if time_column not in parquet_columns(source):
        return _random_masks(total, n_hold, seed)

    def keys() -> Iterator[_U64]:
        for frame in iter_parquet_batches(source, columns=[time_column], batch_rows=batch_rows):
            yield _order_keys(frame[time_column])

    rank = total - n_hold  # sorted position of the first holdout row
    threshold, below = _select(keys, rank)
    ties_to_train = rank - below  # tied rows (in row order) that stay in training
    seen_ties = 0

    def mask(frame: pd.DataFrame) -> npt.NDArray[np.bool_]:
        nonlocal seen_ties
        key = _order_keys(frame[time_column])
        tied = key == threshold
        tie_index = seen_ties + np.cumsum(tied) - 1
        seen_ties += int(tied.sum())
        out: npt.NDArray[np.bool_] = (key > threshold) | (tied & (tie_index >= ties_to_train))
        return out

    return mask


def _random_masks(
    total: int, n_hold: int, seed: int
) -> Callable[[pd.DataFrame], npt.NDArray[np.bool_]]:
    order = np.random.default_rng(seed).permutation(total)
    held = np.zeros(total, dtype=np.bool_)
    held[order[-n_hold:]] = True
    del order
    offset = 0

    def mask(frame: pd.DataFrame) -> npt.NDArray[np.bool_]:
        nonlocal offset
        out = held[offset : offset + len(frame)]
        offset += len(frame)
        return out

    return mask


def _select(keys: Callable[[], Iterator[_U64]], rank: int) -> tuple[np.uint64, int]:
    """The key at sorted position ``rank`` and how many keys are below it (radix select)."""
    prefix, below = 0, 0
    for level in range(64 // _BITS):
        shift = np.uint64(64 - _BITS * (level + 1))
        counts = np.zeros(1 << _BITS, dtype=np.int64)
        for key in keys():
            if level:
                key = key[(key >> np.uint64(shift + np.uint64(_BITS))) == np.uint64(prefix)]
            digits = ((key >> shift) & np.uint64((1 << _BITS) - 1)).astype(np.int64)
            counts += np.bincount(digits, minlength=1 << _BITS)
        cumulative = np.cumsum(counts)
        digit = int(np.searchsorted(cumulative, rank - below, side="right"))
        below += int(cumulative[digit - 1]) if digit else 0
        prefix = (prefix << _BITS) | digit
    return np.uint64(prefix), below


def _order_keys(column: pd.Series) -> _U64:
    """Unsigned keys sorting as numpy sorts the column (nulls and NaN last)."""
    dtype = column.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        values = np.array(pd.DatetimeIndex(column).asi8, dtype=np.int64)
        values[column.isna().to_numpy()] = np.iinfo(np.int64).max
        keys: _U64 = values.view(np.uint64) ^ _SIGN
        return keys
    if pd.api.types.is_integer_dtype(dtype):
        ints = column.to_numpy(dtype="int64", na_value=np.iinfo(np.int64).max)
        keys = np.asarray(ints.view(np.uint64) ^ _SIGN, dtype=np.uint64)
        return keys
    if pd.api.types.is_float_dtype(dtype):
        floats = column.to_numpy(dtype="float64") + 0.0  # -0.0 sorts with 0.0
        bits = floats.view(np.int64)
        signed = bits ^ ((bits >> 63) & np.int64(0x7FFFFFFFFFFFFFFF))
        signed[np.isnan(floats)] = np.iinfo(np.int64).max
        keys = np.asarray(signed.view(np.uint64) ^ _SIGN, dtype=np.uint64)
        return keys
    raise ConfigError(
        f"time column {column.name!r} is {dtype}; a holdout by time needs timestamps or numbers"
    )
