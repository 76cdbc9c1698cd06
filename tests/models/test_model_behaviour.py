"""Behavioural tests of the trained loans model, in the manner of Made-With-ML's
``tests/model/test_behavioral.py``: invariance, direction and minimum functionality.

The model is trained once per module on simulated applications (``tasks.data.simulator``,
whose default probability is known: it never reads ``open_accounts``), through the real
``train_model`` into a registry on an in-memory blob store, tracked by a ``NullTracker``.
Training on CPU is seeded and deterministic, so the numbers below do not drift between runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.bundle import ModelBundle, load_bundle
from models.config import ModelConfig, TrainingConfig
from models.metrics import roc_auc
from registry.catalog import Catalog
from registry.store import Registry
from retrain.testing import NullTracker
from retrain.testing_blobs import InMemoryBlobStore
from tasks.data.simulator import FEATURES_CATEGORICAL, FEATURES_NUMERIC, TARGET, simulate
from tasks.training.fit import train_model
from tasks.training.plan import TrainingPlan, TrainingRun

# Thresholds, with their measured values for the seeded model in comments.
INVARIANCE_MEAN = 0.015  # mean |change| from open_accounts +-2: ~0.004
INVARIANCE_MAX = 0.06  # largest |change| from it: ~0.03
AUC_FLOOR = 0.72  # holdout AUC: ~0.77 (the simulator's own ceiling is about 0.8)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    """The loans MLP trained on 6,000 applications for 4 epochs (a few seconds on one core)."""
    root = tmp_path_factory.mktemp("behaviour")
    plan = TrainingPlan(
        model="loans",
        target=TARGET,
        task="binary",
        numeric=FEATURES_NUMERIC,
        categorical=FEATURES_CATEGORICAL,
        architecture=ModelConfig(hidden_sizes=(32, 16)),
        fitting=TrainingConfig(max_epochs=4, batch_size=256, patience=2),
    )
    run = TrainingRun(tracker=NullTracker(), checkpoint_root=root / "checkpoints")
    catalog = Catalog.open(f"sqlite:///{Path(root) / 'catalog.db'}")
    with Registry(InMemoryBlobStore(), catalog) as registry:
        result = train_model(registry, simulate(6000, seed=1), plan, run)
        return load_bundle(registry.get_bytes, result.bundle_digest)


@pytest.fixture(scope="module")
def holdout() -> pd.DataFrame:
    """Fresh applications the model never saw."""
    return simulate(3000, seed=77)


def _change(model: ModelBundle, frame: pd.DataFrame, column: str, values: Any) -> np.ndarray:
    """P(default) after setting ``column`` to ``values``, minus P(default) before."""
    changed = frame.copy()
    changed[column] = values
    after: np.ndarray = model.predict(changed) - model.predict(frame)
    return after


# -- invariance: what the label does not depend on must not move the prediction ------------------
@pytest.mark.parametrize("shift", [-2, 2])
def test_an_irrelevant_feature_barely_moves_the_prediction(
    model: ModelBundle, holdout: pd.DataFrame, shift: int
) -> None:
    accounts = (holdout["open_accounts"] + shift).clip(lower=0)
    delta = np.abs(_change(model, holdout, "open_accounts", accounts))
    assert delta.mean() < INVARIANCE_MEAN, delta.mean()
    assert delta.max() < INVARIANCE_MAX, delta.max()
    # ... and far less than a change the label does depend on.
    relevant = _change(
        model, holdout, "credit_score", (holdout["credit_score"] + 60).clip(upper=850)
    )
    assert delta.mean() < np.abs(relevant).mean() / 2


def test_the_event_time_is_not_a_feature(model: ModelBundle, holdout: pd.DataFrame) -> None:
    later = holdout["event_time"] + pd.Timedelta(days=365)
    assert np.array_equal(model.predict(holdout.assign(event_time=later)), model.predict(holdout))


# -- direction: known risk factors push the prediction the known way -----------------------------
def test_a_better_credit_score_does_not_raise_the_risk(
    model: ModelBundle, holdout: pd.DataFrame
) -> None:
    delta = _change(model, holdout, "credit_score", (holdout["credit_score"] + 60).clip(upper=850))
    assert delta.mean() < 0, delta.mean()
    assert (delta > 1e-6).mean() <= 0.05  # hardly any applicant looks riskier for it


def test_more_debt_to_income_does_not_lower_the_risk(
    model: ModelBundle, holdout: pd.DataFrame
) -> None:
    delta = _change(model, holdout, "debt_to_income", holdout["debt_to_income"] + 0.2)
    assert delta.mean() > 0, delta.mean()
    assert (delta < -1e-6).mean() <= 0.05


def test_delinquencies_do_not_lower_the_risk(model: ModelBundle, holdout: pd.DataFrame) -> None:
    delta = _change(model, holdout, "delinquencies_2y", holdout["delinquencies_2y"] + 2)
    assert delta.mean() > 0, delta.mean()


# -- minimum functionality: obvious cases and a floor --------------------------------------------
SAFE = {
    "credit_score": 810,
    "debt_to_income": 0.08,
    "credit_utilization": 0.05,
    "delinquencies_2y": 0,
    "inquiries_6m": 0,
    "employment": "employed",
    "loan_term_months": 12,
    "savings_balance": 80_000.0,
}
RISKY = {
    "credit_score": 520,
    "debt_to_income": 0.85,
    "credit_utilization": 0.97,
    "delinquencies_2y": 4,
    "inquiries_6m": 5,
    "employment": "unemployed",
    "loan_term_months": 60,
    "savings_balance": 0.0,
}


def _applicants(holdout: pd.DataFrame, profile: dict[str, Any]) -> pd.DataFrame:
    """The first 50 holdout applicants, each given ``profile``'s risk factors."""
    frame = holdout.head(50).copy()
    for column, value in profile.items():
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = pd.Categorical(
                [value] * len(frame), categories=frame[column].cat.categories
            )
        else:
            frame[column] = value
    return frame


def test_clearly_risky_applicants_rank_above_clearly_safe_ones(
    model: ModelBundle, holdout: pd.DataFrame
) -> None:
    safe = model.predict(_applicants(holdout, SAFE))
    risky = model.predict(_applicants(holdout, RISKY))
    assert (risky > safe).all()  # pairwise: the same person, with the other profile
    assert risky.min() > safe.max()  # and across people
    assert risky.mean() > 0.35 and safe.mean() < 0.05  # measured: ~0.54 and ~0.01


def test_auc_on_a_fresh_holdout_clears_the_floor(model: ModelBundle, holdout: pd.DataFrame) -> None:
    predictions = model.predict(holdout)
    assert ((predictions >= 0) & (predictions <= 1)).all()
    assert roc_auc(holdout[TARGET].to_numpy(), predictions) > AUC_FLOOR


def test_one_applicant_gets_the_same_answer_alone_or_in_a_batch(
    model: ModelBundle, holdout: pd.DataFrame
) -> None:
    batch = model.predict(holdout.head(20))
    alone = [model.predict(holdout.iloc[[i]])[0] for i in range(20)]
    assert np.allclose(batch, alone, atol=1e-6)
