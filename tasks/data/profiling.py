"""Profile a sample of a dataset: what each column is for, and a starter contract for it.

``retrain pipelines init`` starts a pipeline from data alone. Each column gets a role:

- the target (its task inferred from its values unless given: only 0/1 is ``binary``, other
  numbers ``regression``); text targets must be recoded first, and the error says so;
- ``numeric``: floats, and integers with many distinct values, with no empty value (the model
  takes no missing numbers);
- ``categorical``: text and booleans with few distinct values, integers with at most
  ``MAX_INTEGER_CATEGORIES`` distinct values (codes, counts of a few kinds);
- ``time``: the ``event_time`` column that orders rows (holdouts are the latest rows);
- ``skipped``, with the reason: identifiers (unique per row), constants, free text, other
  timestamps, numbers with gaps.

``starter_suite`` turns the profile into a GX suite a first batch passes: the columns exist,
their types, their share of empty values, numeric ranges and category sets with a margin, and
the target's values. It is a start: the user tightens it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from registry.errors import ConfigError
from tasks.data.sources import EVENT_TIME
from tasks.data.validation import dtype_family

__all__ = [
    "MAX_INTEGER_CATEGORIES",
    "MAX_TEXT_CATEGORIES",
    "ColumnProfile",
    "DataProfile",
    "profile_frame",
    "starter_suite",
]

MAX_INTEGER_CATEGORIES = 12
MAX_TEXT_CATEGORIES = 50
_ID_NAME = re.compile(r"(^|[_\-\s])(id|uuid|guid|key)$|^id[_\-\s]", re.IGNORECASE)
_TYPE_FAMILIES = {
    "integer": ["integer", "float"],  # a CSV integer column with an empty cell reads as floats
    "float": ["float", "integer"],
    "boolean": ["boolean", "object"],
    "string": ["string", "object", "category"],
    "object": ["string", "object", "category"],
    "category": ["category", "string", "object"],
}


@dataclass(frozen=True)
class ColumnProfile:
    """One column: its type family, its role in the pipeline and why, and what it holds."""

    name: str
    family: str
    role: str
    note: str
    null_fraction: float
    distinct: int
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] = ()


@dataclass(frozen=True)
class DataProfile:
    """Every column of a sample, its target and the task inferred (or given) for it."""

    rows: int
    target: str
    task: str
    task_note: str
    columns: tuple[ColumnProfile, ...]

    def role(self, role: str) -> list[ColumnProfile]:
        """The columns with ``role``, in the data's order."""
        return [c for c in self.columns if c.role == role]

    @property
    def used(self) -> list[ColumnProfile]:
        """The columns a pipeline reads: features, target and the time column."""
        return [c for c in self.columns if c.role != "skipped"]


def profile_frame(frame: pd.DataFrame, target: str, *, task: str | None = None) -> DataProfile:
    """Profile ``frame`` for a model of ``target``; ``ConfigError`` names a target that is
    missing, empty, or not usable for ``task``."""
    if target not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:20]))
        raise ConfigError(f"--target {target!r} is not a column of the data (columns: {shown})")
    if len(frame) == 0:
        raise ConfigError("the data has no rows to profile")
    inferred, task_note = _task(frame[target], target, task)
    columns = [
        _target_profile(frame[target], target, inferred)
        if name == target
        else _column_profile(frame[name], str(name), len(frame))
        for name in frame.columns
    ]
    if not any(c.role in ("numeric", "categorical") for c in columns):
        raise ConfigError("no column of the data can be a feature (all are ids, constants or text)")
    return DataProfile(len(frame), target, inferred, task_note, tuple(columns))


def _task(series: pd.Series, target: str, task: str | None) -> tuple[str, str]:
    present = series.dropna()
    if present.empty:
        raise ConfigError(f"--target {target!r} is empty in every sampled row")
    numeric = pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)
    if not numeric:
        shown = ", ".join(repr(v) for v in sorted(map(str, present.unique()))[:4])
        raise ConfigError(
            f"--target {target!r} holds text ({shown}); recode it as 0/1 for a binary model "
            "or as numbers for a regression"
        )
    values = set(np.unique(present.astype(float)))
    zero_one = values <= {0.0, 1.0}
    if task == "binary" and not zero_one:
        shown = ", ".join(f"{v:g}" for v in sorted(values)[:4])
        raise ConfigError(
            f"--target {target!r} must hold only 0 and 1 for --task binary; it holds {shown}"
        )
    if task is not None:
        return task, f"{task}, as asked"
    if zero_one:
        return "binary", "binary: the target holds only 0 and 1"
    if len(values) == 2:
        low, high = sorted(values)
        raise ConfigError(
            f"--target {target!r} holds two values ({low:g}, {high:g}); recode them as 0 and 1 "
            "for a binary model, or pass --task regression"
        )
    return "regression", f"regression: the target holds {len(values)} distinct numbers"


def _target_profile(series: pd.Series, name: str, task: str) -> ColumnProfile:
    family = dtype_family(series.dtype)
    present = series.dropna()
    nulls = 1.0 - len(present) / max(len(series), 1)
    distinct = int(present.nunique())
    if task == "binary":
        return ColumnProfile(name, family, "target", "the target", nulls, distinct, values=(0, 1))
    low, high = float(present.min()), float(present.max())
    return ColumnProfile(name, family, "target", "the target", nulls, distinct, low, high)


def _column_profile(series: pd.Series, name: str, rows: int) -> ColumnProfile:
    family = dtype_family(series.dtype)
    present = series.dropna()
    nulls = 1.0 - len(present) / max(rows, 1)
    distinct = int(present.nunique())

    def skipped(note: str) -> ColumnProfile:
        return ColumnProfile(name, family, "skipped", note, nulls, distinct)

    if family.startswith("datetime"):
        if name == EVENT_TIME:
            return ColumnProfile(name, family, "time", "orders rows in time", nulls, distinct)
        return skipped("a timestamp; derive numeric features from it to use it")
    if distinct <= 1:
        return skipped("the same value in every row" if distinct else "empty in every row")
    if _looks_like_id(present, name, family, distinct):
        kind = "an identifier" if family == "integer" else "an identifier or free text"
        return skipped(f"{kind} ({distinct} distinct values in {len(present)} rows)")
    if family == "boolean":
        return _categorical(series, name, family, nulls, distinct, "yes/no")
    integral = family == "integer" or (family == "float" and _all_integral(present))
    if integral and distinct <= MAX_INTEGER_CATEGORIES:
        note = f"whole numbers, {distinct} distinct: a code (move it to numeric if it is a count)"
        return _categorical(series, name, family, nulls, distinct, note)
    if family in ("integer", "float"):
        if nulls > 0.0:  # the model takes no missing numbers: a contract would refuse the data
            return skipped(f"numbers, {nulls:.1%} empty: fill the gaps to use it as numeric")
        low, high = float(present.min()), float(present.max())
        note = f"{family}, {low:g} to {high:g}"
        return ColumnProfile(name, family, "numeric", note, nulls, distinct, low, high)
    if distinct <= min(MAX_TEXT_CATEGORIES, max(2, len(present) // 2)):
        return _categorical(series, name, family, nulls, distinct, f"text, {distinct} values")
    return skipped(f"free text ({distinct} distinct values): not a category")


def _looks_like_id(present: pd.Series, name: str, family: str, distinct: int) -> bool:
    """Text unique per row, an id-named column nearly unique, or whole numbers unique per row
    that run like a sequence (a measure such as an income can be unique too, but spread out)."""
    if family not in ("integer", "string", "object", "category"):
        return False
    if _ID_NAME.search(name) and distinct >= 0.9 * len(present):
        return True
    if distinct != len(present) or len(present) < 20:
        return False
    if family != "integer":
        return True
    return float(present.max()) - float(present.min()) + 1 <= 1.5 * len(present)


def _categorical(
    series: pd.Series, name: str, family: str, nulls: float, distinct: int, note: str
) -> ColumnProfile:
    values = tuple(sorted({_plain(v) for v in series.dropna().unique()}, key=_sort_key))
    return ColumnProfile(name, family, "categorical", note, nulls, distinct, values=values)


def _all_integral(present: pd.Series) -> bool:
    values = present.to_numpy(dtype=np.float64)
    return bool(np.all(np.mod(values, 1.0) == 0.0))


def _plain(value: Any) -> Any:
    """A value as JSON holds it (integral floats as integers: a CSV's 3.0 is the code 3)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return int(value) if float(value).is_integer() else float(value)
    return str(value)


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def starter_suite(profile: DataProfile, name: str) -> dict[str, Any]:
    """A GX suite (as JSON data) that the profiled sample passes, with margins (see module)."""
    used = profile.used
    expectations: list[dict[str, Any]] = [
        _expect("table_row_count_to_be_between", min_value=max(1, min(1000, profile.rows // 10))),
        _expect("table_columns_to_match_set", column_set=[c.name for c in used], exact_match=False),
    ]
    for column in used:
        expectations += _column_expectations(column, profile)
    return {
        "name": name,
        "meta": {
            "notes": f"Profiled from {profile.rows} rows by `retrain pipelines init`; "
            "tighten the ranges, sets and null shares to what the data must be."
        },
        "expectations": expectations,
    }


def _column_expectations(column: ColumnProfile, profile: DataProfile) -> list[dict[str, Any]]:
    name = column.name
    dtypes = _TYPE_FAMILIES.get(column.family, [column.family])
    out = [_expect("column_dtype_to_be_in", column=name, dtypes=dtypes)]
    if column.null_fraction == 0.0 or column.role == "target":
        out.append(_expect("column_values_to_not_be_null", column=name))
    else:
        mostly = max(0.0, math.floor((1.0 - min(1.0, 2 * column.null_fraction + 0.01)) * 1000))
        out.append(_expect("column_values_to_not_be_null", column=name, mostly=mostly / 1000))
    if column.role == "target" and profile.task == "binary":
        out.append(_expect("column_values_to_be_in_set", column=name, value_set=[0, 1]))
    elif column.values:
        out.append(
            _expect(
                "column_values_to_be_in_set",
                column=name,
                value_set=list(column.values),
                mostly=0.99,
            )
        )
    elif column.low is not None and column.high is not None:
        low, high = _with_margin(column.low, column.high, integral=column.family == "integer")
        out.append(
            _expect("column_values_to_be_between", column=name, min_value=low, max_value=high)
        )
    return out


def _with_margin(low: float, high: float, *, integral: bool) -> tuple[float | int, float | int]:
    """``[low, high]`` widened by a tenth of its span (never below 0 for a non-negative
    column), rounded outward to a few significant digits."""
    margin = 0.1 * (high - low) or 0.1 * abs(high) or 1.0
    lower = low - margin
    if low >= 0.0 > lower:
        lower = 0.0
    upper = high + margin
    step = 10.0 ** (math.floor(math.log10(margin)) - 1)
    if integral:
        step = max(1.0, step)
    lower, upper = math.floor(lower / step) * step, math.ceil(upper / step) * step
    if integral:
        return int(lower), int(upper)
    return round(lower, 12), round(upper, 12)


def _expect(kind: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": f"expect_{kind}", "kwargs": kwargs}
