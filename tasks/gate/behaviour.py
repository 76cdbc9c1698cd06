"""Behavioural checks: what a candidate must do on the holdout whatever its metric says.

Declared in a spec's ``gate.behaviour``:

- **invariance** (``{feature, epsilon}``): changing a feature that must not matter moves the
  prediction (P(target) for a binary model) by less than ``epsilon`` on average over the
  sampled rows and changes. A categorical is swapped to every other category the model saw in
  training; a numeric is shifted by one holdout standard deviation up and down. The average,
  not the worst row: a network fitted on finite data gives an unused feature small random
  effects, large on a few rows (the detail shows the max and the share reaching epsilon).
- **direction** (``{feature, sign, tolerance}``): raising a numeric feature by one holdout
  standard deviation must not move the prediction against ``sign`` (``decreasing``: it must
  not rise; ``increasing``: it must not fall) by more than ``tolerance`` on more than
  ``max_share`` of the sampled rows (default 1%: a fitted network bends the wrong way on a
  handful of rows far from the data; a model that learned the sign backwards does on most).

Both run on one seeded sample of the holdout (``sample_rows``) and each gives one ``Check``
with its numbers; every perturbed copy of the sample is predicted in one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from models.categories import category_names
from registry.errors import ConfigError
from tasks.gate.model_card import Check

if TYPE_CHECKING:
    from models.bundle import ModelBundle

__all__ = [
    "BehaviourRules",
    "DirectionRule",
    "InvarianceRule",
    "behaviour_checks",
    "behaviour_problem",
]


class InvarianceRule(BaseModel):
    """A feature the prediction must not depend on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature: str
    epsilon: float = Field(
        default=0.02, gt=0.0, description="Largest tolerated change of the prediction."
    )


class DirectionRule(BaseModel):
    """A numeric feature whose rise must move the prediction one way only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature: str
    sign: Literal["increasing", "decreasing"]
    tolerance: float = Field(
        default=0.0, ge=0.0, description="Largest tolerated move against the sign, per row."
    )
    max_share: float = Field(
        default=0.01,
        ge=0.0,
        lt=1.0,
        description="Largest share of rows that may move against the sign beyond tolerance.",
    )


class BehaviourRules(BaseModel):
    """``gate.behaviour``: invariance and direction checks on a seeded holdout sample."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    invariance: list[InvarianceRule] = Field(default_factory=list)
    direction: list[DirectionRule] = Field(default_factory=list)
    sample_rows: int = Field(default=2000, ge=100, le=100_000)
    seed: int = Field(default=0, ge=0)


def behaviour_problem(
    rules: BehaviourRules | None, numeric: Sequence[str], categorical: Sequence[str]
) -> str | None:
    """What is wrong with ``rules`` for a model of these features (one line), or None."""
    if rules is None:
        return None
    known = {*numeric, *categorical}
    for i, inv in enumerate(rules.invariance):
        if inv.feature not in known:
            return (
                f"gate.behaviour.invariance[{i}].feature: {inv.feature!r} is not one of "
                "features.numeric or features.categorical"
            )
    for i, rule in enumerate(rules.direction):
        if rule.feature not in numeric:
            what = "a categorical feature" if rule.feature in known else "not a feature"
            return (
                f"gate.behaviour.direction[{i}].feature: {rule.feature!r} is {what}; "
                "name one of features.numeric"
            )
    return None


def behaviour_checks(
    bundle: ModelBundle,
    holdout: pd.DataFrame,
    rules: BehaviourRules,
    predictions: np.ndarray | None = None,
) -> list[Check]:
    """One ``Check`` per declared rule, invariance first, on a seeded sample of ``holdout``;
    ``predictions`` are ``bundle``'s on ``holdout`` when the caller made them already."""
    prep = bundle.preprocessor
    problem = behaviour_problem(rules, prep.numeric, prep.categorical)
    if problem is not None:
        raise ConfigError(f"{problem} (the candidate's bundle)")
    if not rules.invariance and not rules.direction:
        return []
    rng = np.random.default_rng(rules.seed)
    take = min(rules.sample_rows, len(holdout))
    rows = np.sort(rng.choice(len(holdout), size=take, replace=False))
    sample = holdout.iloc[rows].reset_index(drop=True)
    base = bundle.predict(sample) if predictions is None else np.asarray(predictions)[rows]
    what = f"P({bundle.target})" if bundle.task == "binary" else f"predicted {bundle.target}"
    checks = [_invariance(bundle, holdout, sample, base, rule, what) for rule in rules.invariance]
    checks += [_direction(bundle, holdout, sample, base, rule, what) for rule in rules.direction]
    return checks


def _std(holdout: pd.DataFrame, feature: str) -> float:
    values = pd.to_numeric(holdout[feature], errors="coerce").to_numpy(dtype=np.float64)
    std = float(np.nanstd(values))
    return std if np.isfinite(std) and std > 0.0 else 1.0


def _variants(
    bundle: ModelBundle, sample: pd.DataFrame, feature: str, values: Sequence[object]
) -> np.ndarray:
    """Predictions [len(values), n] of ``sample`` with ``feature`` set to each of ``values``
    (a scalar, or an array per row), all in one predict call."""
    copies = [sample.assign(**{feature: value}) for value in values]
    stacked = pd.concat(copies, ignore_index=True)
    if isinstance(sample[feature].dtype, pd.CategoricalDtype):  # new categories: plain values
        stacked[feature] = stacked[feature].astype(object)
    return np.asarray(bundle.predict(stacked), dtype=np.float64).reshape(len(values), len(sample))


def _invariance(
    bundle: ModelBundle,
    holdout: pd.DataFrame,
    sample: pd.DataFrame,
    base: np.ndarray,
    rule: InvarianceRule,
    what: str,
) -> Check:
    feature = rule.feature
    if feature in bundle.preprocessor.categorical:
        seen = bundle.preprocessor.vocabularies[feature]
        if not seen:
            return Check(f"invariance {feature}", True, "no training categories to swap to")
        values: list[object] = list(seen)
        # A row's own category is no change: only swaps to another category count.
        own = category_names(sample[feature]).fillna("").to_numpy(dtype=object)
        counted = np.asarray([own != value for value in seen], dtype=bool)
        change = f"swapping it among its {len(seen)} training categories"
    else:
        column = pd.to_numeric(sample[feature], errors="coerce").to_numpy(dtype=np.float64)
        std = _std(holdout, feature)
        values = [column + std, column - std]
        counted = np.ones((2, len(sample)), dtype=bool)
        change = f"shifting it by +-1 std ({std:.4g})"
    moved = np.abs(_variants(bundle, sample, feature, values) - base[None, :])
    changes = moved[counted]
    if changes.size == 0:
        return Check(f"invariance {feature}", True, f"{change} changed no sampled row")
    mean, worst = float(changes.mean()), float(changes.max())
    share = float((changes >= rule.epsilon).mean())
    verdict = "less than" if mean < rule.epsilon else "not less than"
    detail = (
        f"{change} moved {what} by {mean:.4f} on average over {len(sample)} rows, "
        f"{verdict} epsilon {rule.epsilon:g} (max {worst:.3f}; {share:.1%} of changes "
        f"reached epsilon)"
    )
    return Check(f"invariance {feature}", mean < rule.epsilon, detail)


def _direction(
    bundle: ModelBundle,
    holdout: pd.DataFrame,
    sample: pd.DataFrame,
    base: np.ndarray,
    rule: DirectionRule,
    what: str,
) -> Check:
    feature = rule.feature
    std = _std(holdout, feature)
    column = pd.to_numeric(sample[feature], errors="coerce").to_numpy(dtype=np.float64)
    moved = _variants(bundle, sample, feature, [column + std])[0] - base
    against = moved if rule.sign == "decreasing" else -moved  # > 0: the wrong way
    wrong = against > rule.tolerance
    verb, wrong_verb = ("lowered", "raised") if rule.sign == "decreasing" else ("raised", "lowered")
    tolerance = f"tolerance {rule.tolerance:g}, at most {rule.max_share:.1%} of rows"
    share = float(wrong.mean())
    if share <= rule.max_share:
        kept = "all" if share == 0 else f"{1 - share:.1%} of"
        detail = (
            f"raising it by 1 std ({std:.4g}) {verb} or kept {what} on {kept} {len(sample)} "
            f"rows (largest move the wrong way {max(float(against.max()), 0.0):+.4f}; "
            f"{tolerance})"
        )
        return Check(f"direction {feature}", True, detail)
    worst = float(moved.max() if rule.sign == "decreasing" else moved.min())
    detail = (
        f"raising it by 1 std ({std:.4g}) {wrong_verb} {what} on {share:.1%} of "
        f"{len(sample)} rows (max {worst:+.3f}; {tolerance})"
    )
    return Check(f"direction {feature}", False, detail)
