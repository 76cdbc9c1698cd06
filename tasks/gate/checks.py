"""The gate's rules, each as a function from evidence to a ``Check``.

``tasks.gate.evaluate`` decides which rules apply (a first model has no champion to compare
with) and in what order they run; the checks here only measure and judge.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.bootstrap import BootstrapResult, paired_bootstrap
from models.metrics import compute_metrics, metric_spec
from registry.errors import ConfigError
from tasks.data.privacy import masked_labels
from tasks.gate.model_card import Check, SliceResult

if TYPE_CHECKING:
    from models.bundle import ModelBundle
    from tasks.gate.evaluate import GateRules

__all__ = [
    "ChampionComparison",
    "compare_with_champion",
    "floor_check",
    "latency_check",
    "latency_p95_ms",
    "request_instances",
    "slice_results",
]


@dataclass(frozen=True)
class ChampionComparison:
    """The champion's numbers on the holdout and the checks that compare the candidate."""

    metrics: dict[str, float]
    bootstrap: BootstrapResult
    slices: list[SliceResult]
    checks: list[Check]


def floor_check(metric: str, value: float, floor: float) -> Check:
    """The candidate's metric is no worse than an absolute value (a minimum or a maximum)."""
    higher_is_better = metric_spec(metric).higher_is_better
    ok = value >= floor if higher_is_better else value <= floor
    bound = "at least" if higher_is_better else "at most"
    return Check("floor", bool(ok), f"{metric} {value:.4f} must be {bound} {floor:.4f}")


def compare_with_champion(
    candidate: ModelBundle,
    champion: ModelBundle,
    holdout: pd.DataFrame,
    rules: GateRules,
    metric: str,
    y: np.ndarray,
    cand_pred: np.ndarray,
) -> ChampionComparison:
    """Both models on the same rows: a seeded paired bootstrap of the difference, then the
    difference on every slice value. Slices must name categorical features of the candidate."""
    champ_pred = champion.predict(holdout)
    champ_metrics = compute_metrics(champion.task, y, champ_pred)
    boot = paired_bootstrap(
        metric,
        y,
        cand_pred,
        champ_pred,
        resamples=rules.bootstrap_resamples,
        confidence=rules.confidence,
        seed=rules.seed,
    )
    checks = [_bootstrap_check(metric, boot, rules)]
    unknown = [f for f in rules.slices if f not in candidate.preprocessor.categorical]
    if unknown:
        raise ConfigError(f"gate.slices: {', '.join(unknown)} not a categorical feature")
    slices = slice_results(holdout, rules, metric, y, cand_pred, champ_pred)
    checks.append(_slices_check(slices))
    return ChampionComparison(champ_metrics, boot, slices, checks)


def _bootstrap_check(metric: str, boot: BootstrapResult, rules: GateRules) -> Check:
    """No significant regression: the CI's lower bound clears ``-max_regression``."""
    return Check(
        "vs_champion",
        bool(boot.low > -rules.max_regression),
        f"{metric} difference {boot.difference:+.4f}, {rules.confidence:.0%} CI "
        f"[{boot.low:+.4f}, {boot.high:+.4f}] must stay above {-rules.max_regression:+.4f}",
    )


def _slices_check(slices: list[SliceResult]) -> Check:
    """Every judged slice passed; the detail names those that regressed."""
    bad = [s for s in slices if s.passed is False]
    if not bad:
        return Check("slices", True, "no slice regressed")
    worst = ", ".join(f"{s.feature}={s.value} ({s.difference:+.4f})" for s in bad)
    return Check("slices", False, "regressed on " + worst)


def slice_results(
    holdout: pd.DataFrame,
    rules: GateRules,
    metric: str,
    y: np.ndarray,
    cand: np.ndarray,
    champ: np.ndarray,
) -> list[SliceResult]:
    """The metric of both models on each value of each slice feature (missing values form a
    slice of their own); slices under ``slice_min_rows`` rows are reported, not judged."""
    spec = metric_spec(metric)
    out: list[SliceResult] = []
    for feature in rules.slices:
        if feature not in holdout.columns:
            raise ConfigError(f"gate.slices: holdout has no column {feature!r}")
        values = holdout[feature].astype("string").fillna("<missing>").to_numpy()
        shown = masked_labels(sorted(set(values))) if feature in rules.sensitive else {}
        for value in sorted(set(values)):
            mask = values == value
            rows = int(mask.sum())
            c, h = spec.fn(y[mask], cand[mask]), spec.fn(y[mask], champ[mask])
            diff = spec.sign * (c - h)
            judged = rows >= rules.slice_min_rows and bool(np.isfinite(diff))
            passed = (diff >= -rules.slice_max_regression) if judged else None
            label = shown.get(value, str(value))
            out.append(SliceResult(feature, label, rows, c, h, diff, passed))
    return out


def latency_check(
    bundle: ModelBundle, holdout: pd.DataFrame, rules: GateRules, budget_ms: float
) -> tuple[float, Check]:
    """p95 single-instance latency and whether it stays within ``budget_ms``."""
    latency = latency_p95_ms(bundle, holdout, rules.latency_samples, rules.seed)
    detail = f"p95 {latency:.2f} ms must be within {budget_ms:.2f} ms"
    return latency, Check("latency", latency <= budget_ms, detail)


def latency_p95_ms(bundle: ModelBundle, holdout: pd.DataFrame, samples: int, seed: int) -> float:
    """p95 of one-instance predictions, as the model server makes them (list of dicts)."""
    instances = request_instances(bundle, holdout, samples, seed)
    bundle.predict(instances[:1])  # warm-up: first call pays for lazy initialisation
    timings = np.empty(samples)
    for i, inst in enumerate(instances):
        start = time.perf_counter()
        bundle.predict([inst])
        timings[i] = time.perf_counter() - start
    return float(np.percentile(timings, 95) * 1000.0)


def request_instances(
    bundle: ModelBundle, holdout: pd.DataFrame, samples: int, seed: int
) -> list[dict[str, Any]]:
    """``samples`` holdout rows drawn with ``seed`` (with replacement), each as the model server
    receives an instance: a dict of plain JSON types."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(holdout), size=samples)
    frame = holdout.iloc[picks][list(bundle.feature_names)]
    instances: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
    return instances
