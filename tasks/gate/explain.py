"""Global feature attributions at the gate: what the candidate relies on, against the champion.

Two measures per feature, for the candidate and (when there is one) the champion, on the same
holdout rows:

- **permutation importance**: how much the gate metric worsens when the feature's column is
  shuffled (on a seeded sample of at most ``GateRules.explain_rows`` holdout rows,
  ``explain_repeats`` shuffles each); positive means the model needs the feature;
- **mean |IG|**: the mean absolute integrated-gradients attribution over up to ``IG_ROWS``
  rows against an ``IG_BACKGROUND``-row background from the same sample, ``IG_STEPS`` steps
  (logit units for a binary model, standardised target units for regression).

Each feature's *share* is its positive permutation importance over the sum of them. A feature
is flagged when its share moved by more than ``importance_shift`` times (either way) against the
champion while holding at least ``importance_min_share`` in one of the two models: a model that
suddenly leans on one feature, or stopped using one, deserves a look before it ships. A flag
is reported on the card; it does not fail the gate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from models.bundle import ModelBundle
    from tasks.gate.evaluate import GateRules

__all__ = ["IG_BACKGROUND", "IG_ROWS", "Attributions", "FeatureAttribution", "explain_gate"]

IG_ROWS = 256
IG_BACKGROUND = 32
IG_STEPS = 8  # a global mean |IG| needs less precision than one row's explanation
# Added to both shares before their ratio, so a feature going from 0.1% to 0.4% is no "4x".
_SHARE_FLOOR = 0.01


@dataclass(frozen=True)
class FeatureAttribution:
    """One feature's importance in the candidate and the champion (None where absent)."""

    feature: str
    importance: float | None
    importance_std: float | None
    share: float | None
    mean_abs_ig: float | None
    champion_importance: float | None = None
    champion_importance_std: float | None = None
    champion_share: float | None = None
    champion_mean_abs_ig: float | None = None
    change: float | None = None
    """The candidate's share over the champion's (both floored at 1%); None without one."""
    flag: str | None = None
    """``"jumped"`` or ``"collapsed"`` when the share moved beyond the rule, else None."""

    @property
    def note(self) -> str | None:
        """The flag as a sentence, e.g. ``importance of credit_score jumped 4.1x against the
        champion`` or ``importance of age collapsed to 0.20x of the champion's``."""
        if self.flag is None or self.change is None:
            return None
        if self.flag == "jumped":
            return f"importance of {self.feature} jumped {self.change:.1f}x against the champion"
        return f"importance of {self.feature} collapsed to {self.change:.2f}x of the champion's"


@dataclass(frozen=True)
class Attributions:
    """The gate's attributions: per feature, ranked by the candidate's importance."""

    metric: str
    units: str
    rows: int
    ig_rows: int
    background_rows: int
    repeats: int
    features: tuple[FeatureAttribution, ...]

    @property
    def flagged(self) -> tuple[FeatureAttribution, ...]:
        return tuple(f for f in self.features if f.flag is not None)

    @property
    def notes(self) -> list[str]:
        """One sentence per flagged feature."""
        return [n for n in (f.note for f in self.features) if n is not None]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (no NaN: an undefined number is None)."""
        data = asdict(self)
        data["features"] = [asdict(f) for f in self.features]
        return data

    def table_rows(self) -> list[dict[str, Any]]:
        """The features as table rows (for a Prefect table artifact)."""
        return [asdict(f) for f in self.features]

    def brief_rows(self) -> list[dict[str, Any]]:
        """The features as narrow table rows, for a terminal."""
        return [
            {
                "feature": f.feature,
                "importance": f.importance,
                "std": f.importance_std,
                "share": f.share,
                "champion share": f.champion_share,
                "change": f.change,
                "mean |IG|": f.mean_abs_ig,
                "flag": f.flag,
            }
            for f in self.features
        ]


def explain_gate(
    candidate: ModelBundle,
    champion: ModelBundle | None,
    holdout: pd.DataFrame,
    rules: GateRules,
    metric: str,
) -> Attributions | None:
    """Attributions of ``candidate`` (and ``champion``) on a seeded sample of ``holdout``;
    None when ``rules.explain_rows`` is 0 or the holdout is empty."""
    if rules.explain_rows <= 0 or len(holdout) == 0:
        return None
    rng = np.random.default_rng(rules.seed)
    size = min(rules.explain_rows, len(holdout))
    sample = holdout.iloc[np.sort(rng.choice(len(holdout), size=size, replace=False))]
    sample = sample.reset_index(drop=True)
    ig_rows = sample.iloc[: min(IG_ROWS, size)]
    # the background comes from the other rows when there are enough of them
    rest = size - len(ig_rows)
    pool = np.arange(len(ig_rows), size) if rest >= IG_BACKGROUND else np.arange(size)
    background = sample.iloc[rng.choice(pool, size=min(IG_BACKGROUND, len(pool)), replace=False)]
    y = sample[candidate.target].to_numpy(dtype=np.float64)
    cand = _measure(candidate, sample, y, ig_rows, background, metric, rules)
    champ = (
        _measure(champion, sample, y, ig_rows, background, metric, rules)
        if champion is not None
        else None
    )
    features = _compare(cand, champ, rules.importance_shift, rules.importance_min_share)
    return Attributions(
        metric=metric,
        units="logit" if candidate.task == "binary" else "standardised target",
        rows=size,
        ig_rows=len(ig_rows),
        background_rows=len(background),
        repeats=rules.explain_repeats,
        features=tuple(features),
    )


@dataclass(frozen=True)
class _Measured:
    importance: dict[str, tuple[float, float]]
    share: dict[str, float]
    mean_abs_ig: dict[str, float | None]


def _measure(
    bundle: ModelBundle,
    sample: pd.DataFrame,
    y: np.ndarray,
    ig_rows: pd.DataFrame,
    background: pd.DataFrame,
    metric: str,
    rules: GateRules,
) -> _Measured:
    # torch loads here, not at import: flows import the gate at start-up.
    from models.attributions import (
        bundle_permutation_importance,
        feature_names,
        integrated_gradients,
    )

    names = feature_names(bundle)
    importance = bundle_permutation_importance(
        bundle, sample, y, metric, repeats=rules.explain_repeats, seed=rules.seed
    )
    ig = integrated_gradients(bundle, ig_rows, background, steps=IG_STEPS)
    mean_abs = np.abs(ig).mean(axis=0)
    positive = {f: max(m, 0.0) if math.isfinite(m) else 0.0 for f, (m, _) in importance.items()}
    total = sum(positive.values())
    share = {f: (v / total if total > 0 else 0.0) for f, v in positive.items()}
    ig_means = {f: _finite(float(v)) for f, v in zip(names, mean_abs, strict=True)}
    return _Measured(importance, share, ig_means)


def _compare(
    cand: _Measured, champ: _Measured | None, shift: float, min_share: float
) -> list[FeatureAttribution]:
    """One row per feature of either model, ranked by the candidate's importance."""
    names = list(cand.importance)
    if champ is not None:
        names += [f for f in champ.importance if f not in cand.importance]
    out = []
    for f in names:
        mean, std = cand.importance.get(f, (math.nan, math.nan))
        share = cand.share.get(f)
        row = FeatureAttribution(
            feature=f,
            importance=_finite(mean),
            importance_std=_finite(std),
            share=share,
            mean_abs_ig=cand.mean_abs_ig.get(f),
        )
        if champ is not None:
            c_mean, c_std = champ.importance.get(f, (math.nan, math.nan))
            c_share = champ.share.get(f)
            change, flag = _shift(share, c_share, shift, min_share)
            row = FeatureAttribution(
                **{
                    **asdict(row),
                    "champion_importance": _finite(c_mean),
                    "champion_importance_std": _finite(c_std),
                    "champion_share": c_share,
                    "champion_mean_abs_ig": champ.mean_abs_ig.get(f),
                    "change": change,
                    "flag": flag,
                }
            )
        out.append(row)
    out.sort(key=lambda r: -(r.importance if r.importance is not None else -math.inf))
    return out


def _shift(
    share: float | None, champion_share: float | None, shift: float, min_share: float
) -> tuple[float | None, str | None]:
    """The share ratio and its flag; a feature one model lacks is neither compared nor
    flagged (a feature set change shows in the lineage)."""
    if share is None or champion_share is None:
        return None, None
    ratio = (share + _SHARE_FLOOR) / (champion_share + _SHARE_FLOOR)
    if max(share, champion_share) < min_share:
        return ratio, None
    if ratio > shift:
        return ratio, "jumped"
    if ratio < 1.0 / shift:
        return ratio, "collapsed"
    return ratio, None


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
