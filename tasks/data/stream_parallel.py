"""A data contract over a snapshot file, its row groups shared out to worker processes.

GX costs about a second of fixed work per batch plus a few microseconds per row and uses one
core, so a large snapshot is validated by ``workers`` processes, each scanning a contiguous run
of row groups with ``tasks.data.stream_validation.scan``; their partial results merge in row
order into exactly the verdict one process would reach. Each worker holds one batch of
``batch_rows`` rows: the caller sizes it as its share of the memory budget.
"""

from __future__ import annotations

import multiprocessing
import resource
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from tasks.data.stream_io import _open, iter_parquet_batches
from tasks.data.stream_validation import Partial, plan_suite, scan, verdict
from tasks.data.validation_result import ValidationResult

__all__ = ["validate_parquet"]


def validate_parquet(
    path: Path, suite: Mapping[str, Any], *, batch_rows: int, workers: int = 1
) -> tuple[ValidationResult, list[int]]:
    """The suite's verdict over the Parquet file at ``path``, and each process's peak RSS
    in KiB (this one first)."""
    _, kinds = plan_suite(suite)  # a refused suite fails here, before any process starts
    groups = _open(path).metadata.num_row_groups
    shares = _split(groups, max(1, min(workers, groups)))
    if len(shares) <= 1:
        found = scan(iter_parquet_batches(path, batch_rows=batch_rows), suite)
        return verdict(suite, found), [_peak_kib()]
    method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=len(shares), mp_context=context) as pool:
        futures = [
            pool.submit(_scan_share, str(path), share, dict(suite), batch_rows) for share in shares
        ]
        results = [f.result() for f in futures]
    found = Partial()
    for partial, _ in results:
        found.merge(partial, kinds)
    return verdict(suite, found), [_peak_kib()] + [peak for _, peak in results]


def _split(groups: int, parts: int) -> list[list[int]]:
    bounds = [groups * i // parts for i in range(parts + 1)]
    return [
        list(range(bounds[i], bounds[i + 1])) for i in range(parts) if bounds[i + 1] > bounds[i]
    ]


def _scan_share(
    path: str, row_groups: Sequence[int], suite: dict[str, Any], batch_rows: int
) -> tuple[Partial, int]:
    batches = iter_parquet_batches(Path(path), batch_rows=batch_rows, row_groups=row_groups)
    return scan(batches, suite), _peak_kib()


def _peak_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
