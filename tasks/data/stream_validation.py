"""A data contract over a table read in batches, with the verdict of the whole table at once.

Each expectation of the suite takes one of three paths:

- **per batch, counts added** (every GX column-map, column-pair-map and multicolumn-map
  expectation: ``expect_column_values_to_not_be_null``, ``..._to_be_between``,
  ``..._to_be_in_set``, ``..._to_match_regex`` ...): GX runs on each batch; element, unexpected
  and missing counts add up, the unexpected percentage and the ``mostly`` verdict are
  recomputed over all rows exactly as GX computes them for one frame;
- **per batch, all must pass** (schema checks: ``expect_table_columns_to_match_set``,
  ``..._match_ordered_list``, ``expect_column_to_exist``, ``expect_table_column_count_*``,
  ``expect_column_dtype_to_be_in``, ``expect_column_values_to_be_of_type`` /
  ``_in_type_list``): the first failing batch's result, else the first batch's;
- **exact aggregates** (``expect_table_row_count_to_be_between`` / ``_to_equal``,
  ``expect_column_mean_to_be_between``, ``expect_column_min_to_be_between``,
  ``expect_column_max_to_be_between``, ``expect_column_sum_to_be_between``): running row
  counts, sums, minima and maxima over all batches, judged as GX judges them.

Anything else (medians, quantiles, standard deviations, uniqueness, monotonicity, distinct-value
sets) has no exact batched form and the suite is refused with a ``ConfigError`` naming it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pandas as pd

from registry.errors import ConfigError
from tasks.data.validation import _build_suite, _key, gx_batch_definition, run_gx_batch
from tasks.data.validation_result import ValidationResult, check_from_gx

__all__ = ["Partial", "plan_suite", "scan", "verdict"]

SCHEMA_EXPECTATIONS = frozenset(
    {
        "expect_table_columns_to_match_set",
        "expect_table_columns_to_match_ordered_list",
        "expect_column_to_exist",
        "expect_table_column_count_to_equal",
        "expect_table_column_count_to_be_between",
        "expect_column_dtype_to_be_in",
        "expect_column_values_to_be_of_type",
        "expect_column_values_to_be_in_type_list",
    }
)
AGGREGATE_EXPECTATIONS = frozenset(
    {
        "expect_table_row_count_to_be_between",
        "expect_table_row_count_to_equal",
        "expect_column_mean_to_be_between",
        "expect_column_min_to_be_between",
        "expect_column_max_to_be_between",
        "expect_column_sum_to_be_between",
    }
)
# Map expectations whose verdict depends on rows of other batches.
_ACROSS_BATCHES = frozenset(
    {
        "expect_column_values_to_be_unique",
        "expect_compound_columns_to_be_unique",
        "expect_multicolumn_values_to_be_unique",
        "expect_column_values_to_be_increasing",
        "expect_column_values_to_be_decreasing",
    }
)


@dataclass
class _Column:
    """Running non-null count, sum, minimum and maximum of one column."""

    count: int = 0
    total: float = 0.0
    low: Any = None
    high: Any = None

    def add(self, values: pd.Series) -> None:
        present = values.dropna()
        if not present.empty:
            self.merge(_Column(len(present), float(present.sum()), present.min(), present.max()))

    def merge(self, other: _Column) -> None:
        if not other.count:
            return
        self.count += other.count
        self.total += other.total
        self.low = other.low if self.low is None or other.low < self.low else self.low
        self.high = other.high if self.high is None or other.high > self.high else self.high


@dataclass
class _Outcome:
    """One expectation's result so far (plain data: it crosses process boundaries)."""

    type: str
    kwargs: dict[str, Any]
    result: dict[str, Any]
    success: bool
    exception_info: Any = None

    def as_gx(self) -> Any:
        """The shape ``check_from_gx`` reads."""
        config = SimpleNamespace(type=self.type, kwargs=self.kwargs)
        return SimpleNamespace(
            expectation_config=config,
            result=self.result,
            exception_info=self.exception_info,
            success=self.success,
        )


@dataclass
class Partial:
    """What a scan of some consecutive batches found; partials merge in row order."""

    rows: int = 0
    columns: list[str] | None = None
    totals: dict[str, _Column] = field(default_factory=dict)
    outcomes: dict[str, _Outcome] = field(default_factory=dict)

    def merge(self, later: Partial, kinds: Mapping[str, str | None]) -> None:
        self.rows += later.rows
        self.columns = self.columns if self.columns is not None else later.columns
        for column, stats in later.totals.items():
            self.totals.setdefault(column, _Column()).merge(stats)
        for key, outcome in later.outcomes.items():
            before = self.outcomes.get(key)
            kind = kinds[outcome.type] or "map"
            self.outcomes[key] = outcome if before is None else _combine(before, outcome, kind)


def plan_suite(suite: Mapping[str, Any]) -> tuple[Any, dict[str, str | None]]:
    """The GX suite and each expectation type's path; ``ConfigError`` for a type with none."""
    gx_suite = _build_suite(suite)
    kinds = {e.expectation_type: _path_of(e.expectation_type) for e in gx_suite.expectations}
    refused = sorted(k for k, path in kinds.items() if path is None)
    if refused:
        raise ConfigError(
            f"suite {suite.get('name')}: {', '.join(refused)} cannot be checked on a table "
            "read in batches; drop it from the suite or raise the memory budget"
        )
    return gx_suite, kinds


def scan(batches: Iterable[pd.DataFrame], suite: Mapping[str, Any]) -> Partial:
    """Run the suite's batched checks over ``batches``. Schema checks run on the first batch
    and again only on a batch whose columns or dtypes differ from it."""
    gx_suite, kinds = plan_suite(suite)

    def sub_suite(paths: set[str]) -> Any:
        chosen = [e for e in gx_suite.expectations if kinds[e.expectation_type] in paths]
        return _gx_suite_of(gx_suite, chosen) if chosen else None

    every_batch, schema_too = sub_suite({"map"}), sub_suite({"map", "schema"})
    aggregate_columns = {
        str(e.configuration.kwargs["column"])
        for e in gx_suite.expectations
        if kinds[e.expectation_type] == "aggregate" and "column" in e.configuration.kwargs
    }
    found = Partial()
    first_dtypes: pd.Series | None = None
    runner = _GxRunner()
    for frame in batches:
        names = list(map(str, frame.columns))
        batch = Partial(rows=len(frame), columns=names)
        for column in aggregate_columns & set(names):
            batch.totals.setdefault(column, _Column()).add(frame[column])
        same_schema = first_dtypes is not None and frame.dtypes.equals(first_dtypes)
        first_dtypes = frame.dtypes if first_dtypes is None else first_dtypes
        gx_suite_now = every_batch if same_schema else schema_too
        if gx_suite_now is not None:
            for raw in runner.validate(frame, gx_suite_now).results:
                outcome = _outcome_of(raw)
                batch.outcomes[_key(outcome.type, outcome.kwargs)] = outcome
        found.merge(batch, kinds)
    return found


def verdict(suite: Mapping[str, Any], found: Partial) -> ValidationResult:
    """The ``ValidationResult`` of all scanned rows, in suite order."""
    gx_suite, kinds = plan_suite(suite)
    if found.columns is None:
        raise ConfigError(f"suite {suite.get('name')}: the table has no batches to validate")
    columns = set(found.columns)
    checks = []
    for expectation in gx_suite.expectations:
        kwargs = dict(expectation.configuration.kwargs)
        if kinds[expectation.expectation_type] == "aggregate":
            outcome = _aggregate_result(expectation.expectation_type, kwargs, found)
        else:
            outcome = found.outcomes[_key(expectation.expectation_type, kwargs)]
        checks.append(check_from_gx(outcome.as_gx(), columns))
    return ValidationResult(contract=str(suite["name"]), rows=found.rows, checks=tuple(checks))


def _outcome_of(raw: Any) -> _Outcome:
    config = raw.expectation_config
    return _Outcome(
        type=str(config.type),
        kwargs=dict(config.kwargs),
        result=dict(raw.result or {}),
        success=bool(raw.success),
        exception_info=raw.exception_info,
    )


def _path_of(kind: str) -> str | None:
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )
    from great_expectations.expectations.registry import get_expectation_impl

    if kind in SCHEMA_EXPECTATIONS:
        return "schema"
    if kind in AGGREGATE_EXPECTATIONS:
        return "aggregate"
    impl = get_expectation_impl(kind)
    maps = (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation)
    if issubclass(impl, maps) and kind not in _ACROSS_BATCHES:
        return "map"
    return None


def _gx_suite_of(whole: Any, expectations: list[Any]) -> Any:
    import great_expectations as gx

    return gx.ExpectationSuite(name=whole.name, expectations=expectations, meta=dict(whole.meta))


class _GxRunner:
    """One ephemeral GX context and batch definition, reused for every batch."""

    def __init__(self) -> None:
        self._definition: Any = None

    def validate(self, frame: pd.DataFrame, gx_suite: Any) -> Any:
        if self._definition is None:
            self._definition = gx_batch_definition()
        return run_gx_batch(self._definition, frame, gx_suite)


def _combine(before: _Outcome, later: _Outcome, kind: str) -> _Outcome:
    if kind == "schema" or _failed_to_run(before) or _failed_to_run(later):
        return before if not before.success or later.success else later
    res, new = dict(before.result), later.result
    for name in ("element_count", "unexpected_count", "missing_count"):
        if res.get(name) is not None and new.get(name) is not None:
            res[name] += new[name]
    elements, unexpected = res.get("element_count") or 0, res.get("unexpected_count")
    considered = elements - (res.get("missing_count") or 0)
    res["unexpected_percent"] = (
        unexpected / considered * 100 if unexpected is not None and considered > 0 else None
    )
    mostly = float(before.kwargs.get("mostly", 1.0))
    success = (
        unexpected is None
        or elements == 0
        or considered == 0
        or (considered - unexpected) / considered >= mostly
    )
    return _Outcome(before.type, before.kwargs, res, success)


def _failed_to_run(outcome: _Outcome) -> bool:
    info = outcome.exception_info
    if not isinstance(info, dict):
        return False
    if info.get("raised_exception"):
        return True
    return any(isinstance(v, dict) and v.get("raised_exception") for v in info.values())


def _aggregate_result(kind: str, kwargs: dict[str, Any], found: Partial) -> _Outcome:
    if kind.startswith("expect_table_row_count"):
        observed: Any = found.rows
    else:
        column = found.totals.get(str(kwargs["column"]))
        observed = None
        if column is not None and column.count:
            observed = {
                "expect_column_mean_to_be_between": column.total / column.count,
                "expect_column_sum_to_be_between": column.total,
                "expect_column_min_to_be_between": column.low,
                "expect_column_max_to_be_between": column.high,
            }[kind]
    if kind == "expect_table_row_count_to_equal":
        success = observed == kwargs.get("value")
    else:
        success = observed is not None and _between(observed, kwargs)
    return _Outcome(kind, kwargs, {"observed_value": observed}, success)


def _between(value: Any, kwargs: Mapping[str, Any]) -> bool:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None and (value <= low if kwargs.get("strict_min") else value < low):
        return False
    return not (high is not None and (value >= high if kwargs.get("strict_max") else value > high))
