"""Reading and encoding a streamed Parquet file's row groups, ahead of the training step.

``ordered_read_ahead`` runs a function over row groups on a few worker threads and yields the
results in the order of the groups, at most ``workers + 1`` ahead of the consumer: the order,
hence the batches, are those of a plain loop, and memory stays bounded.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from models.preprocessing import Preprocessor

__all__ = ["encode", "encode_workers", "ordered_read_ahead", "read_group"]

T = TypeVar("T")
R = TypeVar("R")


def read_group(path: Path, group: int, columns: Sequence[str]) -> pd.DataFrame:
    """One row group of ``path`` (only ``columns``) as a pandas frame."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as parquet:
        table = parquet.read_row_group(group, columns=list(columns))
    return table.to_pandas()


def encode(
    frame: pd.DataFrame, pre: Preprocessor, target: str, regression: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(numeric float32, codes int64, the target as the net learns it, float32)."""
    num, cat = pre.transform(frame)
    y = frame[target].to_numpy(dtype=np.float64)
    if regression:
        y = (y - pre.target_mean) / pre.target_std
    return num, cat, y.astype(np.float32)


def encode_workers() -> int:
    """Threads that read and encode row groups: one core is left to the training loop."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def ordered_read_ahead(
    fn: Callable[[T], R], items: Iterable[T], *, workers: int | None = None
) -> Generator[R, None, None]:
    """``fn(item)`` for each item, in order, computed on ``workers`` threads ahead of the
    consumer (at most ``workers + 1`` pending); the pool stops when the consumer does.
    ``workers=0`` computes each in the consumer's thread, when it is asked for."""
    workers = encode_workers() if workers is None else workers
    if workers == 0:
        yield from map(fn, items)
        return
    pending: deque[Future[R]] = deque()
    source = iter(items)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="retrain-encode")
    try:
        for item in source:
            pending.append(pool.submit(fn, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
