"""Drift over tables larger than memory: ``detect_drift`` on the rows it would sample anyway.

``detect_drift`` compares seeded samples of ``DriftPolicy.sample_rows`` rows per side
(``sample_frame``: ``default_rng([seed, 0])`` for the reference, ``[seed, 1]`` for the
current data, positions drawn without replacement, row order kept). A Parquet footer gives the
row count, so the very same positions are drawn here and picked out batch by batch: the result
equals the in-memory one, while only the samples (and one batch) are ever held. Only the
columns drift looks at are read. ``sample_rows=None`` (all rows) cannot be bounded and is
refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from registry.errors import ConfigError
from tasks.data.drift import detect_drift, sample_positions
from tasks.data.stream_io import iter_parquet_batches, parquet_columns, parquet_rows, rows_at

if TYPE_CHECKING:
    from tasks.data.drift import DriftPolicy
    from tasks.data.drift_result import DriftResult

__all__ = ["drift_of_tables", "sample_table"]


def sample_table(
    path: Path, columns: list[str], rows: int, seed: int, stream: int, batch_rows: int, total: int
) -> pd.DataFrame:
    """``sample_frame`` of the ``total`` rows of the table at ``path`` (only ``columns``),
    read in batches."""
    positions = sample_positions(total, rows, seed, stream)
    return rows_at(iter_parquet_batches(path, columns=columns, batch_rows=batch_rows), positions)


def drift_of_tables(
    reference: Path,
    current: Path,
    policy: DriftPolicy,
    *,
    batch_rows: int,
    render: bool = True,
    transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> DriftResult:
    """``detect_drift`` of two Parquet tables, each held only as its sample. ``transform``
    (row-wise) maps the current table first: it is applied to the sample, all columns read."""
    if policy.sample_rows is None:
        raise ConfigError(
            "drift over all rows of a table larger than the memory budget cannot be bounded; "
            "set the drift policy's sample_rows (default 50000)"
        )
    ref_names, cur_names = parquet_columns(reference), parquet_columns(current)
    reserved = {*policy.exclude, policy.target, policy.prediction}
    wanted = policy.columns or [c for c in ref_names if c not in reserved]
    extras = [c for c in (policy.target, policy.prediction) if c]
    needed = {*wanted, *extras}
    ref_rows, cur_rows = parquet_rows(reference), parquet_rows(current)
    ref_columns = [c for c in ref_names if c in needed]
    ref = sample_table(
        reference, ref_columns, policy.sample_rows, policy.seed, 0, batch_rows, ref_rows
    )
    cur_columns = cur_names if transform is not None else [c for c in cur_names if c in needed]
    cur = sample_table(
        current, cur_columns, policy.sample_rows, policy.seed, 1, batch_rows, cur_rows
    )
    cur = transform(cur) if transform is not None else cur
    result = detect_drift(ref, cur, policy, render=render)
    return dataclasses.replace(result, reference_rows=ref_rows, current_rows=cur_rows)
