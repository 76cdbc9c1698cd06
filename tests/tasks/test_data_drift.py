"""Drift with Evidently: shifted traffic is flagged, stable traffic is not, and the seeded
sample used on large data reaches the same verdict as the full computation."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from registry.errors import DriftError
from registry.store import Registry
from tasks.data.drift import DriftPolicy, detect_drift, record_drift, sample_frame
from tasks.data.simulator import REGRESSION_TARGET, SCENARIOS, TARGET, simulate
from tasks.data.sources import EVENT_TIME


def loans_policy(**changes: object) -> DriftPolicy:
    """The drift policy for the simulated loans: ``default`` is the target, every other column
    but the time and the regression target is a feature (what a loans spec fills in)."""
    return DriftPolicy.model_validate(
        {"target": TARGET, "exclude": [EVENT_TIME, REGRESSION_TARGET], **changes}
    )


LOANS = loans_policy()
FULL = loans_policy(sample_rows=None)


def test_covariate_shift_is_flagged_and_stable_is_not() -> None:
    reference = simulate(4_000, seed=1)
    shifted = detect_drift(reference, simulate(4_000, scenario="covariate_shift", seed=2), LOANS)
    assert shifted.drifted and shifted.drifted_share >= 0.3
    assert {"credit_score", "annual_income", "region"} <= set(shifted.drifted_columns)
    by_name = {c.column: c for c in shifted.columns}
    assert by_name["credit_score"].method == "Wasserstein distance (normed)"
    assert by_name["credit_score"].score is not None and by_name["credit_score"].score > 0.1
    assert shifted.target is not None and shifted.target.column == TARGET
    assert "<html" in shifted.html.lower()
    stable = detect_drift(reference, simulate(4_000, seed=2), LOANS, render=False)
    assert not stable.drifted and stable.drifted_count == 0


def test_missing_and_retyped_columns_count_as_drifted() -> None:
    result = detect_drift(
        simulate(3_000, seed=1),
        simulate(3_000, scenario="schema_break", seed=2),
        LOANS,
        render=False,
    )
    kinds = {c.column: c.kind for c in result.columns if c.drifted}
    assert kinds == {
        "annual_income": "missing",
        "employment_years": "missing",
        "loan_term_months": "type_changed",
    }


def test_target_and_prediction_drift_are_reported_separately() -> None:
    reference = simulate(4_000, seed=1).assign(prediction=0.2)
    current = simulate(4_000, scenario="concept_drift", seed=2)
    current = current.assign(prediction=current[TARGET] * 0.6 + 0.1)
    policy = loans_policy(per_column_threshold={TARGET: 0.05})
    result = detect_drift(reference, current, policy, render=False)
    assert result.target is not None and result.target.drifted
    assert result.target.threshold == 0.05
    assert result.prediction is not None and result.prediction.drifted
    assert "prediction" not in {c.column for c in result.columns}
    assert not result.drifted  # features did not move; only the relationship did


def test_sample_is_seeded_and_bounded() -> None:
    frame = simulate(20_000, seed=1)
    a, b = sample_frame(frame, 5_000, 3, 0), sample_frame(frame, 5_000, 3, 0)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 5_000 and a["event_time"].is_monotonic_increasing
    assert not a.equals(sample_frame(frame, 5_000, 4, 0))
    assert sample_frame(frame, 50_000, 3, 0) is frame


def _verdicts_agree(rows: int, sample_rows: int, scenario: str) -> None:
    reference = simulate(rows, seed=1)
    current = simulate(rows, scenario=scenario, seed=2)
    sampled = detect_drift(reference, current, loans_policy(sample_rows=sample_rows), render=False)
    full = detect_drift(reference, current, FULL, render=False)
    assert sampled.sampled_rows == (sample_rows, sample_rows)
    assert full.sampled_rows == (rows, rows)
    assert sampled.drifted == full.drifted, (scenario, sampled.summary(), full.summary())


@pytest.mark.parametrize("scenario", ["stable", "covariate_shift"])
def test_sampled_verdict_matches_full_data_fast(scenario: str) -> None:
    _verdicts_agree(5_000, 1_500, scenario)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_sampled_verdict_matches_full_data_on_every_scenario(scenario: str) -> None:
    _verdicts_agree(200_000, LOANS.sample_rows or 0, scenario)


def test_report_is_stored_content_hashed(registry: Registry) -> None:
    result = detect_drift(
        simulate(3_000, seed=1), simulate(3_000, scenario="covariate_shift", seed=2), LOANS
    )
    record = record_drift(registry, result, name="loans", meta={"model": "loan-default"})
    assert record.kind == "drift_report" and record.meta["drifted"] is True
    assert record.meta["model"] == "loan-default"
    assert registry.get_bytes(record.digest).decode() == result.html


def test_bad_policy_and_inputs_are_refused() -> None:
    with pytest.raises(ValidationError):
        DriftPolicy(sample_rows=10)
    with pytest.raises(ValidationError):
        DriftPolicy(share=0.3)  # type: ignore[call-arg]  # unknown field on purpose
    with pytest.raises(DriftError, match="rows in both"):
        detect_drift(simulate(0), simulate(100), LOANS)
    with pytest.raises(DriftError, match="not in the reference"):
        detect_drift(simulate(2_000), simulate(2_000), DriftPolicy(columns=["nope"]))


def test_a_specs_integer_categories_are_compared_as_categories_in_the_flow() -> None:
    import numpy as np

    from retrain.config.specs import DEFAULT_SPECS_DIR, PipelineSpec, load_spec

    raw = load_spec(DEFAULT_SPECS_DIR / "loan-default.yaml").model_dump()
    raw["features"]["categorical"] = [*raw["features"]["categorical"], "branch"]
    del raw["drift"]  # re-derived from the features, as for a spec file without a drift block
    spec = PipelineSpec.model_validate(raw)
    assert "branch" in spec.drift.categorical and spec.drift.target == "default"
    rng = np.random.default_rng(3)
    reference, current = simulate(3000, seed=1), simulate(3000, seed=2)
    reference["branch"] = rng.integers(100, 160, len(reference))  # branch codes, not amounts
    current["branch"] = rng.integers(100, 160, len(current)).astype(float)  # read as floats
    result = detect_drift(reference, current, spec.drift, render=False)
    branch = next(c for c in result.columns if c.column == "branch")
    assert branch.kind == "categorical" and not branch.drifted
    assert "default" not in [c.column for c in result.columns]  # the target is not a feature
