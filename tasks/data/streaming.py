"""Tables larger than memory: snapshot, split, validate and drift-check Parquet in batches.

Every stage that holds a whole frame in memory has a streamed twin here that holds one batch
(or a bounded sample) at a time; the batch size follows ``Settings.memory_budget_mb`` through
``batch_rows_for``. The streamed results equal the in-memory ones for the same rows:

- ``snapshot_parquet`` / ``split_holdout_streaming``: the same digests as ``take_snapshot`` /
  ``split_holdout`` (``tasks.data.stream_snapshot``, ``tasks.data.stream_holdout``);
- ``reservoir_sample``: a seeded uniform sample of an iterable of frames of unknown length;
- ``validate_streaming``: the same verdict and counts as ``validate_frame``
  (``tasks.data.stream_validation`` says which expectations are combined how), optionally
  with the row groups shared out to worker processes (``tasks.data.stream_parallel``);
- ``drift_streaming``: the same result as ``detect_drift``, which already compares seeded
  samples: the streamed path draws the very same rows (``tasks.data.stream_drift``).

A pipeline takes this path when its source is a local Parquet file or folder larger than the
budget (``tasks.data.sources.is_large``); smaller data keeps the in-memory path.

For readers (training): ``snapshot_path(registry, digest)`` is a local, verified file of a
snapshot; ``iter_snapshot(registry, digest, columns=..., batch_rows=...)`` yields its frames,
typed as the whole snapshot would be.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tasks.data.sources import NO_S3, S3Options
from tasks.data.stream_holdout import StreamedSplit, split_holdout_streaming
from tasks.data.stream_io import (
    BATCH_ROWS,
    batch_rows_for,
    iter_parquet_batches,
    iter_snapshot,
    parquet_columns,
    parquet_rows,
    reservoir_sample,
    snapshot_path,
)
from tasks.data.stream_snapshot import snapshot_parquet

if TYPE_CHECKING:
    from registry.store import Registry
    from tasks.data.drift import DriftPolicy
    from tasks.data.drift_result import DriftResult
    from tasks.data.validation_result import ValidationResult

__all__ = [
    "BATCH_ROWS",
    "LargeTable",
    "StreamedSplit",
    "batch_rows_for",
    "drift_streaming",
    "iter_parquet_batches",
    "iter_snapshot",
    "large_table",
    "parquet_rows",
    "reservoir_sample",
    "snapshot_parquet",
    "snapshot_path",
    "split_holdout_streaming",
    "validate_streaming",
    "validation_workers",
]


@dataclass(frozen=True)
class LargeTable:
    """A local Parquet file or folder too large to load whole: its batch size, and the
    row-wise ``transform`` each batch gets before it is stored (the pipeline's PII rules)."""

    path: Path
    batch_rows: int
    size_bytes: int = 0
    transform: Callable[[pd.DataFrame], pd.DataFrame] | None = field(default=None, repr=False)

    def prepared(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.transform(frame) if self.transform is not None else frame


def large_table(
    source: str | Path,
    memory_budget_mb: int | None,
    *,
    transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    s3: S3Options | None = None,
    s3_client: Any = None,
) -> LargeTable | None:
    """``source`` as a ``LargeTable`` when it is a Parquet table larger than the budget
    (``tasks.data.sources.is_large``), else None: load it whole as before. An ``s3://`` table
    that large is first downloaded, object by object, into a local folder that goes away with
    the returned table."""
    import shutil
    import weakref

    from tasks.data.sources import DatasetSource, is_large, source_size_bytes, spool_large_s3_table

    if memory_budget_mb is None:
        return None
    spooled = spool_large_s3_table(source, memory_budget_mb, s3_client=s3_client, **(s3 or NO_S3))
    if spooled is not None:
        path, size = spooled
    elif is_large(source, memory_budget_mb):
        path, size = Path(DatasetSource.parse(source).location), source_size_bytes(source) or 0
    else:
        return None
    table = LargeTable(
        path=path,
        batch_rows=batch_rows_for(memory_budget_mb, len(parquet_columns(path))),
        size_bytes=size,
        transform=transform,
    )
    if spooled is not None:
        weakref.finalize(table, shutil.rmtree, path, True)
    return table


def validate_streaming(
    registry: Registry,
    digest: str,
    suite: Mapping[str, Any],
    *,
    batch_rows: int = BATCH_ROWS,
    workers: int = 1,
) -> ValidationResult:
    """The suite's verdict over the snapshot ``digest``, one batch in memory at a time in
    each of ``workers`` processes (``validation_workers()``; each holds ``batch_rows`` rows)."""
    from tasks.data.stream_parallel import validate_parquet

    path = snapshot_path(registry, digest)
    result, _ = validate_parquet(path, suite, batch_rows=batch_rows, workers=workers)
    return result


def validation_workers() -> int:
    """Processes a streamed validation uses: the cores, at most four."""
    return max(1, min(4, os.cpu_count() or 1))


def drift_streaming(
    registry: Registry,
    reference: str | Path,
    current: str | Path | LargeTable,
    policy: DriftPolicy,
    *,
    batch_rows: int = BATCH_ROWS,
    render: bool = True,
) -> DriftResult:
    """``detect_drift`` of two tables given as snapshot digests (``str``), Parquet paths or a
    ``LargeTable``, read in batches: only the policy's seeded sample of each side is held."""
    from tasks.data.stream_drift import drift_of_tables

    def path(table: str | Path) -> Path:
        return snapshot_path(registry, table) if isinstance(table, str) else Path(table)

    if isinstance(current, LargeTable):
        return drift_of_tables(
            path(reference),
            current.path,
            policy,
            batch_rows=current.batch_rows,
            render=render,
            transform=current.transform,
        )
    return drift_of_tables(
        path(reference), path(current), policy, batch_rows=batch_rows, render=render
    )
