"""Feature preprocessing fitted on the training snapshot and stored in the bundle manifest.

Numeric features are standardised with the training mean and standard deviation; categorical
features map to integer codes through a vocabulary whose code 0 is the unknown bucket, so a
value never seen in training still gets a prediction. Categorical values are compared by their
canonical names (``models.categories``): ``3``, ``3.0`` and ``"3"`` are one category.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from math import isfinite
from typing import Any

import numpy as np
import pandas as pd

from models.categories import (
    category_codes,
    category_kind,
    category_name,
    category_names,
    stored_category,
)
from registry.errors import InvalidInstanceError, TrainingError

__all__ = [
    "MAX_LABEL_STDS",
    "MAX_STANDARDISED",
    "MIN_STD",
    "UNKNOWN_CODE",
    "Preprocessor",
    "checked_target",
    "target_values",
    "vocabulary_from_counts",
]

UNKNOWN_CODE = 0
MIN_STD = 1e-6
"""The smallest standard deviation a feature or target is scaled by (a constant column)."""
# A served value this many training standard deviations from the training mean is refused:
# no model has seen anything like it, and far enough out (float32 tops out near 3.4e38) the
# network's activations overflow and its prediction turns into NaN.
MAX_STANDARDISED = 1e9
# A regression label this many training standard deviations from the target's mean is refused:
# one such squared error would swamp every later one in the cumulative online loss.
MAX_LABEL_STDS = 1e4
# From this many instances on, plain numbers are standardised a column at a time in numpy.
_COLUMNAR_MIN_ROWS = 16


@dataclass(frozen=True)
class Preprocessor:
    """Normalisation statistics and vocabularies, plus the regression target's scale."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    vocabularies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    target_mean: float = 0.0
    target_std: float = 1.0
    category_kinds: Mapping[str, str] = field(default_factory=dict)
    """What each categorical column held at training (integer, number, boolean, string)."""

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        numeric: Sequence[str],
        categorical: Sequence[str],
        *,
        max_categories: int,
        target: np.ndarray | None = None,
    ) -> Preprocessor:
        """Statistics of ``frame``; a regression ``target`` is standardised too."""
        missing = [c for c in (*numeric, *categorical) if c not in frame.columns]
        if missing:
            raise TrainingError(f"training data lacks feature column(s): {', '.join(missing)}")
        means: list[float] = []
        stds: list[float] = []
        for name in numeric:
            values = _numeric_column(frame[name], name)
            if not np.isfinite(values).all():
                raise TrainingError(
                    f"feature {name!r} has missing or infinite values; validate the data first"
                )
            means.append(float(values.mean()))
            stds.append(max(float(values.std()), MIN_STD))
        vocabularies = {name: _vocabulary(frame[name], max_categories) for name in categorical}
        kinds = {name: category_kind(frame[name]) for name in categorical}
        t_mean, t_std = 0.0, 1.0
        if target is not None:
            t_mean, t_std = float(target.mean()), max(float(target.std()), MIN_STD)
        return cls(
            numeric=tuple(numeric),
            categorical=tuple(categorical),
            means=tuple(means),
            stds=tuple(stds),
            vocabularies=vocabularies,
            target_mean=t_mean,
            target_std=t_std,
            category_kinds=kinds,
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """Embedding rows per categorical: the vocabulary plus the unknown bucket."""
        return tuple(len(self.vocabularies[name]) + 1 for name in self.categorical)

    def transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(float32 standardised numerics [n, k], int64 category codes [n, m]).

        Raises InvalidInstanceError naming the first absent or malformed feature.
        """
        n = len(frame)
        num = np.empty((n, len(self.numeric)), dtype=np.float32)
        for j, name in enumerate(self.numeric):
            if name not in frame.columns:
                raise InvalidInstanceError(f"instances lack feature {name!r}", field=name)
            values = _numeric_column(frame[name], name)
            bad = ~np.isfinite(values)
            if bad.any():
                row = int(np.argmax(bad))
                raise InvalidInstanceError(
                    f"feature {name!r} must be a finite number (instance {row})", field=name
                )
            num[:, j] = (values - self.means[j]) / self.stds[j]
        cat = np.empty((n, len(self.categorical)), dtype=np.int64)
        for j, name in enumerate(self.categorical):
            if name not in frame.columns:
                raise InvalidInstanceError(f"instances lack feature {name!r}", field=name)
            vocab = self.vocabularies[name]
            # Codes 1..len(vocab) follow the vocabulary; anything else is the unknown bucket.
            cat[:, j] = category_codes(frame[name], pd.Index(vocab))
        return num, cat

    @cached_property
    def _codes(self) -> tuple[dict[str, int], ...]:
        return tuple(
            {value: code for code, value in enumerate(self.vocabularies[name], start=1)}
            for name in self.categorical
        )

    def transform_records(
        self, instances: Sequence[Mapping[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``transform`` for a list of dicts (a request body) without building a DataFrame:
        for the handful of instances a request carries this is many times faster.

        Raises InvalidInstanceError naming the first (by instance, then feature) absent or
        malformed value. A large batch of plain numbers is standardised column by column in
        numpy; anything else in it goes through the row-by-row checks, same answers either way.
        """
        if len(instances) >= _COLUMNAR_MIN_ROWS:
            columnar = self._transform_columns(instances)
            if columnar is not None:
                return columnar
        num = np.empty((len(instances), len(self.numeric)), dtype=np.float32)
        cat = np.empty((len(instances), len(self.categorical)), dtype=np.int64)
        numeric = list(zip(self.numeric, self.means, self.stds, strict=True))
        categorical = list(zip(self.categorical, self._codes, strict=True))
        for i, inst in enumerate(instances):
            if not isinstance(inst, Mapping):
                raise InvalidInstanceError(f"instance {i} is not an object", field="instances")
            for j, (name, mean, std) in enumerate(numeric):
                if name not in inst:
                    raise InvalidInstanceError(f"instance {i} lacks feature {name!r}", field=name)
                num[i, j] = _standardised(inst[name], mean, std, name, i)
            for j, (name, codes) in enumerate(categorical):
                if name not in inst:
                    raise InvalidInstanceError(f"instance {i} lacks feature {name!r}", field=name)
                cat[i, j] = _code(codes, inst[name])
        return num, cat

    def _transform_columns(
        self, instances: Sequence[Mapping[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """``transform_records`` one column at a time, or None when any value is not plain
        (a missing feature, a non-number, a value out of range): the row path then names it.
        A big request spends most of its time here, holding the GIL: numpy keeps that short."""
        if not all(type(inst) is dict for inst in instances):
            return None
        num = np.empty((len(instances), len(self.numeric)), dtype=np.float32)
        cat = np.empty((len(instances), len(self.categorical)), dtype=np.int64)
        for j, (name, mean, std) in enumerate(
            zip(self.numeric, self.means, self.stds, strict=True)
        ):
            column = [inst.get(name) for inst in instances]
            if not {type(v) for v in column} <= {int, float}:  # bool, str, None: row path
                return None
            try:
                scaled = (np.asarray(column, dtype=np.float64) - mean) / std
            except OverflowError:
                return None
            if not (np.abs(scaled) <= MAX_STANDARDISED).all():  # also False for NaN
                return None
            num[:, j] = scaled
        for j, (name, codes) in enumerate(zip(self.categorical, self._codes, strict=True)):
            if not all(name in inst for inst in instances):
                return None
            cat[:, j] = [_code(codes, inst[name]) for inst in instances]
        return num, cat

    def label_range(self, task: str) -> tuple[float, float]:
        """The labels feedback may carry for a model of ``task``: [0, 1] for a binary model,
        within ``MAX_LABEL_STDS`` training standard deviations of the mean for regression."""
        if task == "binary":
            return 0.0, 1.0
        spread = MAX_LABEL_STDS * self.target_std
        return self.target_mean - spread, self.target_mean + spread

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": {
                n: {"mean": m, "std": s}
                for n, m, s in zip(self.numeric, self.means, self.stds, strict=True)
            },
            "numeric_order": list(self.numeric),
            "categorical": {n: list(self.vocabularies[n]) for n in self.categorical},
            "categorical_order": list(self.categorical),
            "categorical_types": {
                n: self.category_kinds.get(n, "string") for n in self.categorical
            },
            "target": {"mean": self.target_mean, "std": self.target_std},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessor:
        numeric = tuple(str(n) for n in data["numeric_order"])
        categorical = tuple(str(n) for n in data["categorical_order"])
        return cls(
            numeric=numeric,
            categorical=categorical,
            means=tuple(float(data["numeric"][n]["mean"]) for n in numeric),
            stds=tuple(float(data["numeric"][n]["std"]) for n in numeric),
            vocabularies={
                n: tuple(stored_category(str(v)) for v in data["categorical"][n])
                for n in categorical
            },
            target_mean=float(data["target"]["mean"]),
            target_std=float(data["target"]["std"]),
            category_kinds={
                str(n): str(kind) for n, kind in dict(data.get("categorical_types") or {}).items()
            },
        )


def target_values(frame: pd.DataFrame, target: str, task: str) -> np.ndarray:
    """The target column as float64, checked: binary targets hold only 0 and 1."""
    if task not in ("binary", "regression"):
        raise TrainingError(f"unknown task {task!r}; use binary or regression")
    if target not in frame.columns:
        raise TrainingError(f"training data has no target column {target!r}")
    if len(frame) < 10:
        raise TrainingError(f"training data has {len(frame)} rows; at least 10 are needed")
    return checked_target(frame[target], target, task)


def checked_target(series: pd.Series, target: str, task: str) -> np.ndarray:
    """``series`` (the target column, or a chunk of it) as float64: numeric, no missing
    values, and only 0 and 1 for a binary task; TrainingError saying which is not."""
    try:
        y: np.ndarray = series.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"target {target!r} must be numeric") from exc
    if not np.isfinite(y).all():
        raise TrainingError(f"target {target!r} has missing values; validate the data first")
    if task == "binary" and not np.isin(y, (0.0, 1.0)).all():
        raise TrainingError(f"binary target {target!r} must hold only 0 and 1")
    return y


def _standardised(raw: Any, mean: float, std: float, name: str, row: int) -> float:
    """One served numeric value, standardised; InvalidInstanceError unless it is a finite number
    within ``MAX_STANDARDISED`` standard deviations (a boolean is not a number here)."""
    try:
        value = float("nan") if isinstance(raw, bool) else float(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of 400 digits
        value = float("nan")
    if not isfinite(value):
        raise InvalidInstanceError(
            f"feature {name!r} must be a finite number (instance {row})", field=name
        )
    scaled = (value - mean) / std
    if not abs(scaled) <= MAX_STANDARDISED:
        raise InvalidInstanceError(
            # The value itself is not repeated: error lines get logged, and a feature may be
            # sensitive (privacy.sensitive); its distance from the training data says enough.
            f"feature {name!r} is out of range: {abs(scaled):.3g} training standard "
            f"deviations from the mean (instance {row})",
            field=name,
        )
    return scaled


def _numeric_column(series: pd.Series, name: str) -> np.ndarray:
    if not (
        pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype)
    ):
        try:
            series = pd.to_numeric(series, errors="raise")
        except (ValueError, TypeError) as exc:
            raise InvalidInstanceError(f"feature {name!r} must be a number", field=name) from exc
    values: np.ndarray = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return values


def _code(codes: Mapping[str, int], value: Any) -> int:
    """The code of one served categorical value (the unknown bucket for anything unseen)."""
    name = category_name(value)
    return UNKNOWN_CODE if name is None else codes.get(name, UNKNOWN_CODE)


def _vocabulary(series: pd.Series, max_categories: int) -> tuple[str, ...]:
    counts = category_names(series).dropna().value_counts()
    return vocabulary_from_counts(counts.items(), max_categories)


def vocabulary_from_counts(
    counts: Iterable[tuple[Any, Any]], max_categories: int
) -> tuple[str, ...]:
    """Most frequent values first (ties by value), so the order is deterministic."""
    ranked = sorted(counts, key=lambda kv: (-int(kv[1]), str(kv[0])))
    return tuple(str(value) for value, _ in ranked[:max_categories])
