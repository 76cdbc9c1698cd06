"""The traffic simulator: seeded, time-ordered, and each scenario departs the way it says."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from tasks.data.simulator import (
    CATEGORIES,
    EVENT_TIME,
    FEATURES,
    REGRESSION_TARGET,
    SCENARIOS,
    TARGET,
    simulate,
)


def test_same_seed_same_frame_other_seed_other_frame() -> None:
    a = simulate(3_000, scenario="covariate_shift", seed=7)
    b = simulate(3_000, scenario="covariate_shift", seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(simulate(3_000, scenario="covariate_shift", seed=8))


def test_stable_frame_has_the_loans_layout() -> None:
    frame = simulate(5_000, seed=1, start=datetime(2026, 3, 1, tzinfo=UTC))
    assert list(frame.columns) == [EVENT_TIME, *FEATURES, TARGET, REGRESSION_TARGET]
    assert len(FEATURES) >= 15 and {"region", "employment"} <= set(FEATURES)
    times = frame[EVENT_TIME]
    assert str(times.dt.tz) == "UTC" and times.is_monotonic_increasing
    assert times.iloc[0] >= pd.Timestamp("2026-03-01", tz="UTC")
    assert set(frame[TARGET].unique()) == {0, 1}
    assert 0.05 < frame[TARGET].mean() < 0.4
    assert frame[REGRESSION_TARGET].between(0, 1).all()
    for column, values in CATEGORIES.items():
        assert set(frame[column].unique()) <= set(values)


def test_default_depends_non_linearly_on_credit_score() -> None:
    frame = simulate(60_000, seed=2)
    bands = pd.cut(frame["credit_score"], [300, 560, 620, 680, 740, 800, 851], right=False)
    rates = frame.groupby(bands, observed=True)[TARGET].mean().to_numpy()
    assert np.all(np.diff(rates) < 0)  # riskier bands default more ...
    drops = -np.diff(rates)
    assert drops[-1] < drops[0] / 2  # ... but the curve flattens at the top


def test_label_noise_flips_a_large_share_of_labels() -> None:
    clean = simulate(20_000, seed=3)
    poisoned = simulate(20_000, scenario="label_noise", seed=3)
    flipped = (clean[TARGET] != poisoned[TARGET]).mean()
    assert flipped > 0.25
    pd.testing.assert_frame_equal(clean[list(FEATURES)], poisoned[list(FEATURES)])


def test_broken_scenarios_break_what_they_say() -> None:
    broken = simulate(2_000, scenario="schema_break", seed=1)
    assert "income" in broken and "annual_income" not in broken
    assert "employment_years" not in broken
    assert not pd.api.types.is_numeric_dtype(broken["loan_term_months"])
    nulls = simulate(10_000, scenario="nulls", seed=1)
    assert 0.1 < nulls["annual_income"].isna().mean() < 0.2
    outliers = simulate(10_000, scenario="outliers", seed=1)
    assert (outliers["loan_amount"] < 0).mean() > 0.01


def test_covariate_shift_moves_features_not_the_relationship() -> None:
    stable = simulate(20_000, seed=4)
    shifted = simulate(20_000, scenario="covariate_shift", seed=4)
    assert shifted["credit_score"].mean() < stable["credit_score"].mean() - 15


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_is_seeded_and_sized(scenario: str) -> None:
    a = simulate(1_500, scenario=scenario, seed=11)
    assert len(a) == 1_500
    pd.testing.assert_frame_equal(a, simulate(1_500, scenario=scenario, seed=11))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        simulate(10, scenario="tsunami")
    with pytest.raises(ValueError, match="rows"):
        simulate(-1)
