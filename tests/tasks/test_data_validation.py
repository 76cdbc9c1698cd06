"""The ``loans`` data contract: broken batches are stopped, with the failing checks named."""

from __future__ import annotations

import json
from typing import Any

import pytest

from registry.errors import ConfigError, DataValidationError
from registry.store import Registry
from tasks.data.simulator import simulate
from tasks.data.validation import load_suite, validate_and_record, validate_frame


def test_stable_batch_passes_every_check() -> None:
    result = validate_frame(simulate(5_000, seed=1), "loans")
    assert result.success and len(result.checks) == len(load_suite("loans")["expectations"])
    assert result.failures == ()


@pytest.mark.parametrize("scenario", ["covariate_shift", "concept_drift"])
def test_drifted_but_well_formed_batches_pass_the_contract(scenario: str) -> None:
    assert validate_frame(simulate(5_000, scenario=scenario, seed=1), "loans").success


def _failure(scenario: str) -> DataValidationError:
    with pytest.raises(DataValidationError) as exc:
        validate_frame(simulate(5_000, scenario=scenario, seed=1), "loans")
    assert "\n" not in str(exc.value)
    return exc.value


def test_schema_break_is_stopped_and_missing_columns_are_failures() -> None:
    error = _failure("schema_break")
    failed = {(c.expectation, c.column): c for c in error.result.failures}
    assert ("expect_table_columns_to_match_set", None) in failed
    missing = failed[("expect_column_values_to_not_be_null", "annual_income")]
    assert missing.detail == "column 'annual_income' is missing"
    assert failed[("expect_column_dtype_to_be_in", "loan_term_months")].observed == "string"
    assert "annual_income" in str(error)


def test_nulls_are_stopped_with_their_counts() -> None:
    error = _failure("nulls")
    nulls = [c for c in error.result.failures if c.expectation.endswith("not_be_null")]
    assert {c.column for c in nulls} == {
        "annual_income",
        "debt_to_income",
        "credit_utilization",
        "employment",
    }
    assert all(c.element_count == 5_000 and 500 < (c.unexpected_count or 0) < 1_000 for c in nulls)
    assert "of 5000 unexpected" in str(error)


def test_outliers_are_stopped() -> None:
    error = _failure("outliers")
    ranges = {c.column for c in error.result.failures if c.expectation.endswith("be_between")}
    assert {"age", "loan_amount", "interest_rate", "annual_income"} <= ranges


def test_unknown_expectation_type_fails_loudly() -> None:
    suite: dict[str, Any] = load_suite("loans")
    suite["expectations"].append(
        {"type": "expect_column_values_to_be_plausible", "kwargs": {"column": "age"}}
    )
    with pytest.raises(ConfigError, match=r"expect_column_values_to_be_plausible.*unknown type"):
        validate_frame(simulate(2_000, seed=1), suite)


def test_bad_expectation_arguments_and_missing_suite(tmp_path: Any) -> None:
    suite = {
        "name": "x",
        "expectations": [
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"colum": "age", "min_value": 0},
            }
        ],
    }
    with pytest.raises(ConfigError, match="bad arguments"):
        validate_frame(simulate(2_000, seed=1), suite)
    with pytest.raises(ConfigError, match="no expectation suite"):
        validate_frame(simulate(2_000, seed=1), "cards")
    path = tmp_path / "mine.json"
    path.write_text(
        json.dumps(
            {
                "expectations": [
                    {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 10}}
                ]
            }
        )
    )
    assert validate_frame(simulate(20, seed=1), path).success


def test_result_is_stored_in_the_registry_even_when_it_fails(registry: Registry) -> None:
    with pytest.raises(DataValidationError):
        validate_and_record(
            registry, simulate(3_000, scenario="nulls", seed=1), "loans", name="loans"
        )
    validate_and_record(
        registry, simulate(3_000, seed=1), "loans", name="loans", dataset_digest=None
    )
    stored = registry.catalog.artifacts(kind="validation", name="loans")
    assert [a.meta["success"] for a in stored] == [False, True]
    body = json.loads(registry.get_bytes(stored[0].digest))
    assert body["success"] is False and body["rows"] == 3_000
    assert any(c["column"] == "employment" and not c["success"] for c in body["checks"])
