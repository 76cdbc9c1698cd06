"""Metrics agree with their definitions; the paired bootstrap is exact and reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from models.bootstrap import _AucPlan, _sum_statistic, paired_bootstrap
from models.metrics import accuracy, f1, log_loss, mae, metric_spec, rmse, roc_auc


def test_metrics_match_hand_computed_values() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    assert roc_auc(y, p) == pytest.approx(0.75)
    assert roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    assert accuracy(y, p) == pytest.approx(0.75)
    assert f1(y, p) == pytest.approx(2 / 3)
    expected = -np.mean(np.log([0.9, 0.6, 0.35, 0.8]))
    assert log_loss(y, p) == pytest.approx(expected)
    assert rmse(np.array([1.0, 2.0]), np.array([2.0, 4.0])) == pytest.approx(np.sqrt(2.5))
    assert mae(np.array([1.0, 2.0]), np.array([2.0, 4.0])) == pytest.approx(1.5)
    assert np.isnan(roc_auc(np.zeros(3), np.array([0.1, 0.2, 0.3])))


def test_weighted_auc_equals_auc_of_the_resampled_rows() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        y = rng.random(300) < 0.4
        scores = np.round(rng.random(300), 1)  # many ties
        counts = rng.integers(0, 3, 300)
        order = np.argsort(scores, kind="stable")
        got = _AucPlan(scores[order], y[order], order).auc(counts[None, :].astype(np.float32))
        rows = np.repeat(np.arange(300), counts)
        assert got[0] == pytest.approx(roc_auc(y[rows], scores[rows]), abs=1e-9)


@pytest.mark.parametrize("metric", ["log_loss", "accuracy", "f1", "rmse", "mae"])
def test_vectorised_statistic_equals_the_metric_on_the_resampled_rows(metric: str) -> None:
    rng = np.random.default_rng(3)
    n = 400
    spec = metric_spec(metric)
    y = (rng.random(n) < 0.4).astype(float) if spec.task == "binary" else rng.normal(size=n)
    a, b = rng.random(n), rng.random(n)
    statistic = _sum_statistic(metric, y, a, b)
    for _ in range(3):
        counts = np.bincount(rng.integers(0, n, n), minlength=n)  # one resample of n rows
        rows = np.repeat(np.arange(n), counts)
        got = statistic(counts[None, :].astype(np.float32))[0]
        expected = spec.fn(y[rows], a[rows]) - spec.fn(y[rows], b[rows])
        assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss", "accuracy", "f1"])
def test_bootstrap_is_reproducible_with_a_seed(metric: str) -> None:
    rng = np.random.default_rng(1)
    y = rng.random(2000) < 0.3
    better = np.clip(y * 0.4 + rng.random(2000) * 0.6, 0, 1)
    worse = np.clip(y * 0.2 + rng.random(2000) * 0.8, 0, 1)
    first = paired_bootstrap(metric, y, better, worse, resamples=1000, seed=7)
    again = paired_bootstrap(metric, y, better, worse, resamples=1000, seed=7)
    other = paired_bootstrap(metric, y, better, worse, resamples=1000, seed=8)
    assert first == again
    assert (first.low, first.high) != (other.low, other.high)
    assert 0 < first.low <= first.difference <= first.high  # sign-adjusted: higher is better
    swapped = paired_bootstrap(metric, y, worse, better, resamples=1000, seed=7)
    assert swapped.high < 0


def test_regression_bootstrap_prefers_the_smaller_error() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(size=3000)
    close, far = y + rng.normal(0, 0.5, 3000), y + rng.normal(0, 1.0, 3000)
    for metric in ("rmse", "mae"):
        result = paired_bootstrap(metric, y, close, far, resamples=1000, seed=0)
        assert result.low > 0
