"""A ``Preprocessor`` fitted in one pass over a Parquet file's row groups, in bounded memory.

It mirrors ``Preprocessor.fit`` on the training rows (``models.stream_data.validation_mask``
decides which rows those are):

- numeric means and standard deviations (population, ``ddof=0``, floored at ``1e-6``) merged
  chunk by chunk in float64 with Chan's parallel formula: the same figures as numpy's over all
  rows, to rounding;
- category counts of the canonical category names, summed over chunks and ranked by
  ``vocabulary_from_counts`` (most frequent first, ties by value), so the vocabularies are
  identical. At most ``TRACKED_CATEGORIES`` distinct values per column are counted: beyond
  that the least frequent are dropped as they come (the top ``max_categories`` are then
  approximate, and only for columns with that many distinct values);
- category kinds combined over chunks as ``category_kind`` of the whole column would be;
- the regression target's mean and standard deviation, like the numerics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.categories import category_kind, category_names
from models.preprocessing import (
    MIN_STD,
    Preprocessor,
    checked_target,
    vocabulary_from_counts,
)
from models.stream_data import StreamSplit, validation_mask
from models.stream_encode import read_group
from registry.errors import TrainingError

__all__ = ["TRACKED_CATEGORIES", "RunningMoments", "fit_streaming"]

TRACKED_CATEGORIES = 200_000


@dataclass
class RunningMoments:
    """Count, mean and sum of squared deviations, merged chunk by chunk (Chan et al.)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, values: np.ndarray) -> None:
        k = len(values)
        if k == 0:
            return
        mean = float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        total = self.n + k
        delta = mean - self.mean
        self.mean += delta * k / total
        self.m2 += m2 + delta * delta * self.n * k / total
        self.n = total

    @property
    def std(self) -> float:
        return max(float(np.sqrt(self.m2 / self.n)) if self.n else 0.0, MIN_STD)


def fit_streaming(
    path: Path,
    numeric: Sequence[str],
    categorical: Sequence[str],
    *,
    target: str,
    task: str,
    max_categories: int,
    seed: int,
    val_fraction: float,
) -> tuple[Preprocessor, StreamSplit]:
    """The preprocessor of ``path``'s training rows and the file's split, in one pass."""
    import pyarrow.parquet as pq

    if task not in ("binary", "regression"):
        raise TrainingError(f"unknown task {task!r}; use binary or regression")
    with pq.ParquetFile(path) as parquet:
        names = set(parquet.schema_arrow.names)
        group_rows = tuple(
            parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)
        )
    missing = [c for c in (*numeric, *categorical) if c not in names]
    if missing:
        raise TrainingError(f"training data lacks feature column(s): {', '.join(missing)}")
    if target not in names:
        raise TrainingError(f"training data has no target column {target!r}")
    if sum(group_rows) < 10:
        raise TrainingError(f"training data has {sum(group_rows)} rows; at least 10 are needed")
    columns = tuple(dict.fromkeys((*numeric, *categorical, target)))
    moments = {name: RunningMoments() for name in numeric}
    counts: dict[str, Counter[str]] = {name: Counter() for name in categorical}
    kinds: dict[str, set[str]] = {name: set() for name in categorical}
    target_moments = RunningMoments()
    train_rows: list[int] = []
    val_rows: list[int] = []
    first = 0
    for group, rows in enumerate(group_rows):
        frame = read_group(path, group, columns)
        val = validation_mask(first, rows, seed, val_fraction)
        first += rows
        y = checked_target(frame[target], target, task)
        train = frame[~val]
        train_rows.append(len(train))
        val_rows.append(rows - len(train))
        for name in numeric:  # every row is checked: validation rows are encoded too
            moments[name].add(_finite_numbers(frame[name], name)[~val])
        if len(train) == 0:
            continue
        for name in categorical:
            _count(counts[name], train[name])
            kinds[name].add(category_kind(train[name]))
        target_moments.add(y[~val])
    if not sum(train_rows) or not sum(val_rows):
        raise TrainingError(
            f"{sum(group_rows)} rows give {sum(train_rows)} training and {sum(val_rows)} "
            "validation rows; add rows or change val_fraction"
        )
    regression = task == "regression"
    pre = Preprocessor(
        numeric=tuple(numeric),
        categorical=tuple(categorical),
        means=tuple(moments[n].mean for n in numeric),
        stds=tuple(moments[n].std for n in numeric),
        vocabularies={
            n: vocabulary_from_counts(counts[n].items(), max_categories) for n in categorical
        },
        target_mean=target_moments.mean if regression else 0.0,
        target_std=target_moments.std if regression else 1.0,
        category_kinds={n: _combined_kind(kinds[n]) for n in categorical},
    )
    split = StreamSplit(
        path, columns, group_rows, tuple(train_rows), tuple(val_rows), seed, val_fraction
    )
    return pre, split


def _finite_numbers(series: pd.Series, name: str) -> np.ndarray:
    try:
        numbers = pd.to_numeric(series, errors="raise")
        values: np.ndarray = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"feature {name!r} must be a number") from exc
    if not np.isfinite(values).all():
        raise TrainingError(
            f"feature {name!r} has missing or infinite values; validate the data first"
        )
    return values


def _count(counter: Counter[str], series: pd.Series) -> None:
    for value, count in category_names(series).dropna().value_counts().items():
        counter[str(value)] += int(count)
    if len(counter) > TRACKED_CATEGORIES:
        kept = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[: TRACKED_CATEGORIES // 2]
        counter.clear()
        counter.update(dict(kept))


def _combined_kind(kinds: set[str]) -> str:
    """``category_kind`` of the whole column from its chunks' kinds: a column read as objects
    in any chunk is ``string``; booleans stay booleans only if every chunk held booleans."""
    if not kinds:
        return "string"
    if "string" in kinds or ("boolean" in kinds and kinds != {"boolean"}):
        return "string"
    if kinds == {"boolean"}:
        return "boolean"
    return "number" if "number" in kinds else "integer"
