"""Evaluation metrics, vectorised in numpy, shared by training reports and the gate.

Every metric takes the true values and the model's predictions (P(y=1) for binary tasks,
the predicted value for regression) and returns a float.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "METRICS",
    "MetricSpec",
    "accuracy",
    "compute_metrics",
    "f1",
    "log_loss",
    "mae",
    "metric_spec",
    "rmse",
    "roc_auc",
]

_EPS = 1e-7


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (ties share the average rank); NaN if one class is absent."""
    y = np.asarray(y, dtype=bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(
        np.asarray(p, dtype=np.float64), return_inverse=True, return_counts=True
    )
    # Average 1-based rank of each distinct score, then of each row through ``inverse``.
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0
    rank_sum = float(avg_rank[inverse][y].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy of the probabilities (clipped away from 0 and 1)."""
    return float(np.mean(log_loss_rows(y, p)))


def log_loss_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    t = np.asarray(y, dtype=np.float64)
    result: np.ndarray = -(t * np.log(q) + (1.0 - t) * np.log1p(-q))
    return result


def accuracy(y: np.ndarray, p: np.ndarray) -> float:
    """Share of rows whose 0.5-thresholded prediction equals the label."""
    return float(np.mean((np.asarray(p) >= 0.5) == np.asarray(y, dtype=bool)))


def f1(y: np.ndarray, p: np.ndarray) -> float:
    """F1 score of the positive class at threshold 0.5 (0 when nothing is predicted or true)."""
    truth = np.asarray(y, dtype=bool)
    pred = np.asarray(p) >= 0.5
    tp = float(np.sum(truth & pred))
    denom = 2.0 * tp + float(np.sum(~truth & pred)) + float(np.sum(truth & ~pred))
    return 2.0 * tp / denom if denom else 0.0


def rmse(y: np.ndarray, p: np.ndarray) -> float:
    """Root mean squared error."""
    diff = np.asarray(p, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    return float(np.sqrt(np.mean(diff * diff)))


def mae(y: np.ndarray, p: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(p, dtype=np.float64) - np.asarray(y, dtype=np.float64))))


@dataclass(frozen=True)
class MetricSpec:
    """A metric's function, the task it applies to and whether higher is better."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    task: str
    higher_is_better: bool

    @property
    def sign(self) -> float:
        """Multiplier that turns the metric into a higher-is-better score."""
        return 1.0 if self.higher_is_better else -1.0


METRICS: dict[str, MetricSpec] = {
    "roc_auc": MetricSpec("roc_auc", roc_auc, "binary", True),
    "log_loss": MetricSpec("log_loss", log_loss, "binary", False),
    "accuracy": MetricSpec("accuracy", accuracy, "binary", True),
    "f1": MetricSpec("f1", f1, "binary", True),
    "rmse": MetricSpec("rmse", rmse, "regression", False),
    "mae": MetricSpec("mae", mae, "regression", False),
}


def metric_spec(name: str) -> MetricSpec:
    """The metric called ``name``; ValueError lists the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; use one of {', '.join(METRICS)}") from None


def compute_metrics(task: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Every metric of ``task``, finite values only (AUC is undefined with one class)."""
    values = {name: spec.fn(y, p) for name, spec in METRICS.items() if spec.task == task}
    return {k: v for k, v in values.items() if np.isfinite(v)}
