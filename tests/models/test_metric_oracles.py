"""Oracle tests: ``models.metrics`` against scikit-learn, ``models.bootstrap`` against a plain
numpy reimplementation of the same resampling (same seed, same draws).

Random inputs, heavy ties, scores on the 0.5 threshold, probabilities of exactly 0 and 1, and
single-class labels, where each metric's documented behaviour is checked.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
from sklearn import metrics as sk

from models import bootstrap
from models.bootstrap import paired_bootstrap
from models.metrics import (
    METRICS,
    accuracy,
    compute_metrics,
    f1,
    log_loss,
    mae,
    metric_spec,
    rmse,
    roc_auc,
)

_EPS = 1e-7  # models.metrics clips probabilities to [_EPS, 1 - _EPS] for the log loss


def _cases(seed: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, labels, probabilities) of every shape worth checking."""
    rng = np.random.default_rng(seed)
    n = 500
    y = (rng.random(n) < 0.3).astype(np.int64)
    p = np.clip(0.35 * y + 0.65 * rng.random(n), 0.0, 1.0)
    return [
        ("random", y, p),
        ("ties", y, np.round(p, 1)),  # a handful of distinct scores, many ties across classes
        ("all-tied", y, np.full(n, 0.5)),  # one score; every row on the threshold
        ("on-threshold", y, np.where(rng.random(n) < 0.2, 0.5, p)),
        ("perfect", y, y * 0.9 + 0.05),
        ("inverted", y, (1 - y) * 0.9 + 0.05),
        ("rare-positive", (np.arange(n) == 7).astype(np.int64), p),
        ("small", np.array([0, 1]), np.array([0.4, 0.6])),
    ]


BINARY_CASES = [(name, y, p) for seed in (0, 1) for name, y, p in _cases(seed)]
IDS = [f"{name}-{i // len(_cases(0))}" for i, (name, _, _) in enumerate(BINARY_CASES)]


@pytest.mark.parametrize(("name", "y", "p"), BINARY_CASES, ids=IDS)
def test_roc_auc_matches_scikit_learn(name: str, y: np.ndarray, p: np.ndarray) -> None:
    assert roc_auc(y, p) == pytest.approx(sk.roc_auc_score(y, p), abs=1e-12)


@pytest.mark.parametrize(("name", "y", "p"), BINARY_CASES, ids=IDS)
def test_threshold_metrics_match_scikit_learn(name: str, y: np.ndarray, p: np.ndarray) -> None:
    predicted = (p >= 0.5).astype(np.int64)  # documented: a score of exactly 0.5 is a positive
    assert accuracy(y, p) == pytest.approx(sk.accuracy_score(y, predicted), abs=1e-12)
    assert f1(y, p) == pytest.approx(sk.f1_score(y, predicted, zero_division=0), abs=1e-12)


@pytest.mark.parametrize(("name", "y", "p"), BINARY_CASES, ids=IDS)
def test_log_loss_matches_scikit_learn(name: str, y: np.ndarray, p: np.ndarray) -> None:
    # Probabilities of exactly 0 or 1 (the rounded "ties" cases hold some) are clipped to
    # [1e-7, 1 - 1e-7] first, as documented; scikit-learn clips at machine epsilon instead.
    clipped = np.clip(p, _EPS, 1 - _EPS)
    expected = sk.log_loss(y, clipped, labels=[0, 1])
    assert log_loss(y, p) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    if ((p > _EPS) & (p < 1 - _EPS)).all():  # nothing to clip: scikit-learn as it is
        assert log_loss(y, p) == pytest.approx(sk.log_loss(y, p, labels=[0, 1]), rel=1e-9)


def test_log_loss_clips_certain_predictions_at_its_documented_epsilon() -> None:
    # scikit-learn clips at machine epsilon; ours at 1e-7, so a confident mistake costs
    # -log(1e-7) (about 16.1) rather than about 36: the same as scikit-learn on clipped input.
    y = np.array([1, 0, 1, 0])
    p = np.array([0.0, 1.0, 1.0, 0.0])
    clipped = np.clip(p, _EPS, 1 - _EPS)
    assert log_loss(y, p) == pytest.approx(sk.log_loss(y, clipped, labels=[0, 1]), rel=1e-9)
    assert log_loss(y, p) == pytest.approx(-np.log(_EPS) / 2, rel=1e-6)
    assert np.isfinite(log_loss(y, p))


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_labels(label: int) -> None:
    """Documented: AUC is undefined (NaN) with one class, as scikit-learn says too; the other
    metrics are defined, and ``compute_metrics`` leaves AUC out rather than report NaN."""
    rng = np.random.default_rng(4)
    y = np.full(200, label)
    p = rng.random(200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's UndefinedMetricWarning
        assert np.isnan(sk.roc_auc_score(y, p))
    assert np.isnan(roc_auc(y, p))
    predicted = (p >= 0.5).astype(np.int64)
    assert accuracy(y, p) == pytest.approx(sk.accuracy_score(y, predicted))
    assert f1(y, p) == pytest.approx(sk.f1_score(y, predicted, zero_division=0))
    assert log_loss(y, p) == pytest.approx(sk.log_loss(y, p, labels=[0, 1]), rel=1e-9)
    reported = compute_metrics("binary", y, p)
    assert set(reported) == {"log_loss", "accuracy", "f1"}


def test_f1_is_zero_when_nothing_is_predicted_or_true() -> None:
    y = np.zeros(10, dtype=np.int64)
    p = np.full(10, 0.2)
    assert f1(y, p) == 0.0 == sk.f1_score(y, np.zeros(10), zero_division=0)


@pytest.mark.parametrize("seed", range(4))
def test_regression_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.normal(size=300) * 3
    pred = y + rng.standard_t(3, size=300)  # heavy tails: outliers weigh on RMSE, not MAE
    assert rmse(y, pred) == pytest.approx(sk.root_mean_squared_error(y, pred), rel=1e-12)
    assert mae(y, pred) == pytest.approx(sk.mean_absolute_error(y, pred), rel=1e-12)
    assert rmse(y, y) == 0.0 == mae(y, y)
    assert set(compute_metrics("regression", y, pred)) == {"rmse", "mae"}


def test_every_metric_has_an_oracle_here() -> None:
    assert set(METRICS) == {"roc_auc", "log_loss", "accuracy", "f1", "rmse", "mae"}
    assert [name for name, spec in METRICS.items() if spec.higher_is_better] == [
        "roc_auc",
        "accuracy",
        "f1",
    ]


# -- the paired bootstrap -------------------------------------------------------------------------
_SKLEARN: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "roc_auc": lambda y, p: float(sk.roc_auc_score(y, p)) if 0 < y.sum() < len(y) else np.nan,
    "log_loss": lambda y, p: float(sk.log_loss(y, np.clip(p, _EPS, 1 - _EPS), labels=[0, 1])),
    "accuracy": lambda y, p: float(sk.accuracy_score(y, p >= 0.5)),
    "f1": lambda y, p: float(sk.f1_score(y, p >= 0.5, zero_division=0)),
    "rmse": lambda y, p: float(sk.root_mean_squared_error(y, p)),
    "mae": lambda y, p: float(sk.mean_absolute_error(y, p)),
}


def _reference_bootstrap(
    metric: str,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    *,
    resamples: int,
    confidence: float,
    seed: int,
    chunk_elements: int,
    score: Callable[[np.ndarray, np.ndarray], float] | None = None,
) -> tuple[float, float, float]:
    """The paired bootstrap written out plainly: the same draws (one spawned stream per chunk
    of ``chunk_elements // n`` resamples), each resample scored by scikit-learn (or ``score``).

    For ROC AUC the drawn positions index the rows sorted by the candidate's score (rows are
    exchangeable, and that order makes the vectorised AUC cheap), so the same seed resamples
    ``order[drawn]`` there; every other metric resamples the drawn rows themselves."""
    fn, sign, n = score or _SKLEARN[metric], metric_spec(metric).sign, len(y)
    order = np.argsort(a, kind="stable") if metric == "roc_auc" else np.arange(n)
    per_chunk = max(1, min(resamples, chunk_elements // n))
    sizes = [min(per_chunk, resamples - start) for start in range(0, resamples, per_chunk)]
    diffs = []
    for size, stream in zip(sizes, np.random.SeedSequence(seed).spawn(len(sizes)), strict=True):
        drawn = np.random.default_rng(stream).integers(0, n, size=(size, n), dtype=np.int32)
        rows = order[drawn]
        diffs += [sign * (fn(y[r], a[r]) - fn(y[r], b[r])) for r in rows]
    finite = np.array([d for d in diffs if np.isfinite(d)])
    alpha = (1 - confidence) / 2
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    return sign * (fn(y, a) - fn(y, b)), float(low), float(high)


def _models(seed: int, n: int, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if task == "regression":
        y = rng.normal(size=n)
        return y, y + 0.8 * rng.normal(size=n), y + rng.normal(size=n)
    y = (rng.random(n) < 0.3).astype(np.int64)
    better = np.round(np.clip(0.4 * y + 0.6 * rng.random(n), 0, 1), 2)  # ties, too
    worse = np.round(np.clip(0.2 * y + 0.8 * rng.random(n), 0, 1), 2)
    return y, better, worse


@pytest.mark.parametrize("metric", list(METRICS))
def test_bootstrap_matches_a_plain_reimplementation(
    metric: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks, so the draws span several spawned streams (and threads) as on big holdouts.
    monkeypatch.setattr(bootstrap, "_CHUNK_ELEMENTS", 30_000)
    n, resamples = 400, 200  # 75 resamples a chunk: three chunks
    y, a, b = _models(11, n, metric_spec(metric).task)
    got = paired_bootstrap(metric, y, a, b, resamples=resamples, confidence=0.9, seed=5)
    observed, low, high = _reference_bootstrap(
        metric, y, a, b, resamples=resamples, confidence=0.9, seed=5, chunk_elements=30_000
    )
    assert got.difference == pytest.approx(observed, abs=1e-9)
    # Counts are float32 in the vectorised version: equal to well below any decision's scale.
    assert (got.low, got.high) == pytest.approx((low, high), abs=1e-5)
    assert (got.confidence, got.resamples) == (0.9, resamples)


@pytest.mark.parametrize("metric", list(METRICS))
def test_bootstrap_is_antisymmetric_and_zero_for_identical_models(metric: str) -> None:
    y, a, b = _models(3, 300, metric_spec(metric).task)
    forward = paired_bootstrap(metric, y, a, b, resamples=1000, seed=2)
    backward = paired_bootstrap(metric, y, b, a, resamples=1000, seed=2)
    assert backward.difference == pytest.approx(-forward.difference, abs=1e-12)
    # Swapped models draw the same rows, except for AUC, whose draws follow the candidate's
    # order (see _reference_bootstrap): there the interval agrees only up to resampling noise.
    close = 0.02 if metric == "roc_auc" else 1e-5
    assert (backward.low, backward.high) == pytest.approx((-forward.high, -forward.low), abs=close)
    same = paired_bootstrap(metric, y, a, a, resamples=1000, seed=2)
    assert (same.difference, same.low, same.high) == (0.0, 0.0, 0.0)


def test_a_clearly_better_model_gets_an_interval_above_zero() -> None:
    y, better, worse = _models(8, 1200, "binary")
    result = paired_bootstrap("roc_auc", y, better, worse, resamples=1000, seed=0)
    assert 0 < result.low < result.difference < result.high
    # With the real chunking (two streams of draws for 1,200 rows), the same interval again;
    # scored by our roc_auc, which matches scikit-learn above and is much faster.
    _, low, high = _reference_bootstrap(
        "roc_auc", y, better, worse, resamples=1000, confidence=0.95, seed=0,
        chunk_elements=bootstrap._CHUNK_ELEMENTS, score=roc_auc,
    )  # fmt: skip
    assert (result.low, result.high) == pytest.approx((low, high), abs=1e-5)


def test_bootstrap_edge_cases() -> None:
    empty = paired_bootstrap("accuracy", np.array([]), np.array([]), np.array([]))
    assert np.isnan(empty.difference) and np.isnan(empty.low) and np.isnan(empty.high)
    one_class = paired_bootstrap(
        "roc_auc", np.ones(50), np.linspace(0, 1, 50), np.linspace(1, 0, 50), resamples=1000
    )
    assert np.isnan(one_class.difference)  # AUC is undefined, so is every resample's
    assert np.isnan(one_class.low) and np.isnan(one_class.high)
    with pytest.raises(ValueError, match="unknown metric"):
        paired_bootstrap("precision", np.ones(3), np.ones(3), np.ones(3))
