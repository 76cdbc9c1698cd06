"""Streamed validation and drift give the whole-frame verdicts; the reservoir sample is fair."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from registry.errors import ConfigError
from registry.store import Registry
from tasks.data.drift import DriftPolicy, detect_drift
from tasks.data.simulator import simulate
from tasks.data.sources import load_frame
from tasks.data.streaming import (
    drift_streaming,
    reservoir_sample,
    snapshot_parquet,
    validate_streaming,
)
from tasks.data.validation import load_suite, validate_frame


def pieces(frame: pd.DataFrame, rows: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), rows):
        yield frame.iloc[start : start + rows]


@pytest.mark.parametrize("scenario", ["stable", "nulls", "outliers", "schema_break"])
def test_batched_contract_equals_whole_frame_contract(registry: Registry, scenario: str) -> None:
    frame = simulate(40_000, seed=2, scenario=scenario)
    suite = load_suite("loans")
    digest = snapshot_parquet(registry, scenario, pieces(frame, 6_000)).digest
    whole = validate_frame(frame, suite, raise_on_failure=False)
    batched = validate_streaming(registry, digest, suite, batch_rows=6_000)
    assert batched.success is whole.success is (scenario == "stable")
    assert batched.to_dict() == whole.to_dict()


def test_worker_processes_reach_the_same_verdict(registry: Registry) -> None:
    frame = simulate(300_000, seed=3, scenario="nulls")  # 3 snapshot row groups
    suite = load_suite("loans")
    digest = snapshot_parquet(registry, "nulls", pieces(frame, 100_000)).digest
    one = validate_streaming(registry, digest, suite, batch_rows=50_000)
    two = validate_streaming(registry, digest, suite, batch_rows=50_000, workers=2)
    assert not two.success
    assert (
        two.to_dict()
        == one.to_dict()
        == validate_frame(frame, suite, raise_on_failure=False).to_dict()
    )


def test_a_mean_out_of_range_fails_only_over_all_rows(registry: Registry) -> None:
    # Each batch's mean is in range on its own only if judged alone; the whole is not.
    frame = pd.DataFrame({"x": np.r_[np.zeros(5_000), np.ones(5_000)]})
    suite = {
        "name": "means",
        "expectations": [
            {
                "type": "expect_column_mean_to_be_between",
                "kwargs": {"column": "x", "max_value": 0.4},
            },
            {"type": "expect_column_max_to_be_between", "kwargs": {"column": "x", "max_value": 1}},
            {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 10_000}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}},
        ],
    }
    digest = snapshot_parquet(registry, "means", pieces(frame, 1_024)).digest
    whole = validate_frame(frame, suite, raise_on_failure=False)
    batched = validate_streaming(registry, digest, suite, batch_rows=1_024)
    assert not batched.success
    assert [c.success for c in batched.checks] == [False, True, True, True]
    assert batched.to_dict() == whole.to_dict()


def test_expectations_without_a_batched_form_are_refused(registry: Registry) -> None:
    digest = snapshot_parquet(registry, "u", [pd.DataFrame({"x": [1, 2, 3]})]).digest
    suite = {
        "name": "u",
        "expectations": [{"type": "expect_column_values_to_be_unique", "kwargs": {"column": "x"}}],
    }
    with pytest.raises(ConfigError, match="expect_column_values_to_be_unique cannot be checked"):
        validate_streaming(registry, digest, suite)


def test_streamed_drift_equals_in_memory_drift(registry: Registry, tmp_path: Path) -> None:
    policy = DriftPolicy(target="default", sample_rows=4_000, categorical=["region"])
    reference = simulate(30_000, seed=1)
    current = simulate(30_000, seed=2, scenario="covariate_shift")
    current.to_parquet(tmp_path / "current.parquet", row_group_size=7_000)
    digest = snapshot_parquet(registry, "ref", pieces(reference, 5_000)).digest
    whole = detect_drift(reference, load_frame(tmp_path / "current.parquet"), policy, render=False)
    streamed = drift_streaming(
        registry, digest, tmp_path / "current.parquet", policy, batch_rows=3_000, render=False
    )
    assert streamed.to_dict() == whole.to_dict()
    assert streamed.drifted and streamed.reference_rows == 30_000


def test_streamed_drift_needs_a_sample_size(registry: Registry) -> None:
    digest = snapshot_parquet(registry, "ref", [simulate(2_000, seed=1)]).digest
    with pytest.raises(ConfigError, match="sample_rows"):
        drift_streaming(registry, digest, digest, DriftPolicy(sample_rows=None))


def test_reservoir_sample_is_seeded_and_independent_of_batching() -> None:
    frame = pd.DataFrame({"i": np.arange(50_000)})
    one = reservoir_sample(pieces(frame, 1_000), 500, seed=7)
    other = reservoir_sample(pieces(frame, 7_777), 500, seed=7)
    pd.testing.assert_frame_equal(one, other)
    assert len(one) == 500 and one["i"].is_unique and one["i"].is_monotonic_increasing
    assert not one.equals(reservoir_sample(pieces(frame, 1_000), 500, seed=8))
    assert len(reservoir_sample(pieces(frame.head(10), 3), 500, seed=1)) == 10


def test_reservoir_sample_is_uniform() -> None:
    # Each of 10 deciles of 10,000 rows should get about a tenth of 200 x 200 picks.
    frame = pd.DataFrame({"i": np.arange(10_000)})
    hits = np.zeros(10)
    for seed in range(200):
        sample = reservoir_sample(pieces(frame, 1_500), 200, seed=seed)
        hits += np.bincount(sample["i"].to_numpy() // 1_000, minlength=10)
    expected = 200 * 200 / 10
    chi2 = float(((hits - expected) ** 2 / expected).sum())
    assert chi2 < 27.9  # p = 0.001 for 9 degrees of freedom
