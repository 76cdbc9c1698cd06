"""Integrated gradients and permutation importance on real trained models.

Two small models are trained once per module through ``train_model`` into a registry on an
in-memory blob store: the loans classifier (``tasks.data.simulator``) and a regressor on a
synthetic frame in which only ``signal`` decides the target.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from models.attributions import (
    bundle_permutation_importance,
    feature_names,
    integrated_gradients,
    integrated_gradients_arrays,
    permutation_importance,
)
from models.bundle import ModelBundle, load_bundle
from models.config import ModelConfig, TrainingConfig
from registry.catalog import Catalog
from registry.store import Registry
from retrain.testing import NullTracker
from retrain.testing_blobs import InMemoryBlobStore
from tasks.data.simulator import FEATURES_CATEGORICAL, FEATURES_NUMERIC, TARGET, simulate
from tasks.training.fit import train_model
from tasks.training.plan import TrainingPlan, TrainingRun, loans_plan


def _train(root: Path, frame: pd.DataFrame, plan: TrainingPlan) -> ModelBundle:
    run = TrainingRun(tracker=NullTracker(), checkpoint_root=root / "checkpoints")
    catalog = Catalog.open(f"sqlite:///{root / 'catalog.db'}")
    with Registry(InMemoryBlobStore(), catalog) as registry:
        result = train_model(registry, frame, plan, run)
        return load_bundle(registry.get_bytes, result.bundle_digest)


@pytest.fixture(scope="module")
def loans(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    plan = loans_plan(
        "loans",
        architecture=ModelConfig(hidden_sizes=(32, 16)),
        fitting=TrainingConfig(max_epochs=4, batch_size=256, patience=2),
    )
    return _train(tmp_path_factory.mktemp("loans"), simulate(4000, seed=1), plan)


def _synthetic(n: int, seed: int) -> pd.DataFrame:
    """``y`` is ``3 * signal`` plus a little noise; ``noise`` and ``colour`` are irrelevant."""
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal(n)
    return pd.DataFrame(
        {
            "signal": signal,
            "noise": rng.standard_normal(n),
            "colour": rng.choice(["red", "green", "blue"], size=n),
            "y": 3.0 * signal + 0.1 * rng.standard_normal(n),
        }
    )


@pytest.fixture(scope="module")
def one_signal(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    plan = TrainingPlan(
        model="one-signal",
        target="y",
        task="regression",
        numeric=("signal", "noise"),
        categorical=("colour",),
        architecture=ModelConfig(hidden_sizes=(16,)),
        fitting=TrainingConfig(max_epochs=6, batch_size=128, patience=2),
    )
    return _train(tmp_path_factory.mktemp("one-signal"), _synthetic(2000, seed=1), plan)


def _raw(bundle: ModelBundle, frame: pd.DataFrame) -> np.ndarray:
    """The network's raw output: logits, or standardised target values."""
    numeric, categorical = bundle.preprocessor.transform(frame)
    with torch.inference_mode():
        out = bundle.net(torch.from_numpy(numeric), torch.from_numpy(categorical))
    raw: np.ndarray = out.double().numpy()
    return raw


def test_attributions_add_up_to_the_logit_gap_from_the_background(loans: ModelBundle) -> None:
    frame, background = simulate(64, seed=5), simulate(16, seed=6)
    ig = integrated_gradients(loans, frame, background, steps=32)
    assert ig.shape == (64, 17) and ig.dtype == np.float64
    assert feature_names(loans) == [*FEATURES_NUMERIC, *FEATURES_CATEGORICAL]
    gap = _raw(loans, frame) - _raw(loans, background).mean()
    assert np.abs(ig.sum(axis=1) - gap).max() < 0.02 * max(1.0, np.abs(gap).max())
    # each logit is the model's, so the probabilities follow from the attributions
    p = 1.0 / (1.0 + np.exp(-(_raw(loans, background).mean() + ig.sum(axis=1))))
    assert np.abs(p - loans.predict(frame)).max() < 0.01


def test_a_feature_the_outcome_never_reads_gets_little_attribution(loans: ModelBundle) -> None:
    """The simulator's default probability ignores ``open_accounts``; credit score drives it."""
    holdout = simulate(256, seed=7)
    mean_abs = np.abs(integrated_gradients(loans, holdout, simulate(32, seed=8))).mean(axis=0)
    by_name = dict(zip(feature_names(loans), mean_abs, strict=True))
    assert by_name["credit_score"] > 2.0 * by_name["open_accounts"]


def test_regression_attributions_are_in_standardised_target_units(one_signal: ModelBundle) -> None:
    frame, background = _synthetic(32, seed=2), _synthetic(16, seed=3)
    ig = integrated_gradients(one_signal, frame, background)
    predicted = one_signal.predict(frame)
    standardised = (predicted - one_signal.preprocessor.target_mean) / (
        one_signal.preprocessor.target_std
    )
    gap = standardised - _raw(one_signal, background).mean()
    assert np.abs(ig.sum(axis=1) - gap).max() < 0.05
    mean_abs = np.abs(ig).mean(axis=0)  # signal, noise, colour
    assert mean_abs[0] > 5.0 * max(mean_abs[1], mean_abs[2])  # measured: ~12x


def test_one_instance_against_the_background_is_one_batched_pass(loans: ModelBundle) -> None:
    """The transformed-array entry point answers the same as the frame one."""
    frame, background = simulate(1, seed=9), simulate(16, seed=10)
    pre = loans.preprocessor
    from_arrays = integrated_gradients_arrays(
        loans.net, *pre.transform(frame), *pre.transform(background), steps=16
    )
    assert np.array_equal(from_arrays, integrated_gradients(loans, frame, background))
    with torch.inference_mode():  # as a server thread might call it
        assert np.array_equal(from_arrays, integrated_gradients(loans, frame, background))
    empty = integrated_gradients(loans, frame.iloc[:0], background)
    assert empty.shape == (0, 17)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        integrated_gradients(loans, frame, background, steps=0)
    with pytest.raises(ValueError, match="background needs at least one row"):
        integrated_gradients(loans, frame, background.iloc[:0])


def test_permutation_importance_finds_the_one_informative_feature(one_signal: ModelBundle) -> None:
    frame = _synthetic(1000, seed=4)
    calls: list[int] = []

    def predict(rows: pd.DataFrame) -> np.ndarray:
        calls.append(len(rows))
        return one_signal.predict(rows)

    features = ["signal", "noise", "colour"]
    y = frame["y"].to_numpy()
    result = permutation_importance(predict, frame[features], y, "rmse", repeats=3, seed=1)
    assert list(result) == features
    assert result["signal"][0] > 1.0  # rmse grows by more than the target's whole spread / 3
    assert abs(result["noise"][0]) < 0.1 and abs(result["colour"][0]) < 0.1
    assert all(std >= 0.0 for _, std in result.values())
    # one call for the baseline, one for every feature x repeat stacked together
    assert calls == [1000, 1000 * 3 * 3]
    calls.clear()
    chunked = permutation_importance(
        predict, frame[features], y, "rmse", repeats=3, seed=1, max_rows=2000
    )
    assert chunked == result and calls == [1000] + [2000] * 4 + [1000]


def test_permutation_importance_is_positive_for_a_loss_and_a_score(loans: ModelBundle) -> None:
    holdout = simulate(2000, seed=11)
    names, y = feature_names(loans), holdout[TARGET].to_numpy()
    for metric in ("roc_auc", "log_loss"):
        result = permutation_importance(loans.predict, holdout[names], y, metric, seed=2)
        top = max(result, key=lambda f: result[f][0])
        assert top in {"credit_score", "interest_rate", "credit_utilization", "debt_to_income"}
        assert result[top][0] > 0.0
    # the bundle's own route permutes the transformed columns: the very same numbers
    same = bundle_permutation_importance(loans, holdout, y, "log_loss", seed=2, max_rows=5000)
    assert same == result
    with pytest.raises(ValueError, match="unknown metric"):
        permutation_importance(loans.predict, holdout[names], y, "nope")
    with pytest.raises(ValueError, match="frame lacks feature column"):
        permutation_importance(loans.predict, holdout[names], y, "roc_auc", features=["x"])
