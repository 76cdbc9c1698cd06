"""How a simulated loan application turns out: whether it defaults and how much is lost.

The simulator's ground truth: ``tasks.data.simulator`` draws the applications, then their
outcomes from these. The default probability is a non-linear function of the features: a
saturating credit-score curve, a debt-to-income hinge, a utilisation cliff, a U-shaped age
effect and an unemployment x long-term interaction.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = ["default_probability", "loss_given_default"]

Floats = npt.NDArray[np.float64]

# Default risk per employment category (in CATEGORIES["employment"] order of the simulator).
_EMPLOYMENT_RISK: Final = np.array([0.0, 0.25, 0.9, 0.1, 0.45])


def default_probability(frame: pd.DataFrame, concept: float) -> Floats:
    """P(default | features); ``concept`` > 0 blends towards a changed relationship."""
    c = min(concept, 1.5)
    score = (frame["credit_score"].to_numpy(np.float64) - 680.0) / 60.0
    dti = frame["debt_to_income"].to_numpy(np.float64)
    util = frame["credit_utilization"].to_numpy(np.float64)
    age = frame["age"].to_numpy(np.float64)
    burden = np.log(frame["loan_amount"].to_numpy() / frame["annual_income"].to_numpy())
    region = frame["region"].cat.codes.to_numpy()
    employment = frame["employment"].cat.codes.to_numpy()
    long_term = frame["loan_term_months"].to_numpy() >= 48
    region_effect = np.array([0.0, 0.3, -0.2, 0.1, 0.05]) * (1.0 - 2.0 * c)
    hinge_at = 0.40 - 0.15 * c
    logit = (
        -2.05
        + 0.6 * c
        - (1.1 - 0.55 * c) * np.tanh(score)  # saturates: beyond ~800 a better score buys little
        + (2.5 + c) * np.maximum(dti - hinge_at, 0.0)
        + 1.3 * (util > 0.8)
        + 0.45 * np.minimum(frame["delinquencies_2y"].to_numpy(), 4)
        + 0.5 * burden
        + _EMPLOYMENT_RISK[employment] * (1.0 + long_term)
        + region_effect[region]
        + 0.0009 * (age - 45.0) ** 2
        - 0.12 * np.log1p(frame["savings_balance"].to_numpy() / 10_000.0)
        + 0.12 * frame["inquiries_6m"].to_numpy()
    )
    probability: Floats = 1.0 / (1.0 + np.exp(-logit))
    return probability


def loss_given_default(rng: np.random.Generator, frame: pd.DataFrame) -> Floats:
    """Share of the exposure lost, in [0, 1]: collateral, burden and savings shape it."""
    ownership = frame["home_ownership"].cat.codes.to_numpy()
    purpose = frame["purpose"].cat.codes.to_numpy()
    burden = frame["loan_amount"].to_numpy() / frame["annual_income"].to_numpy()
    cushion = np.log1p(frame["savings_balance"].to_numpy() / frame["loan_amount"].to_numpy())
    lgd = (
        0.42
        + np.array([0.15, -0.05, -0.18])[ownership]
        + 0.2 * np.tanh(3.0 * burden - 0.6)
        - 0.08 * cushion
        + np.array([0.0, -0.05, -0.12, 0.05, 0.08, 0.12])[purpose]
        + 0.07 * rng.standard_normal(len(frame))
    )
    clipped: Floats = np.round(np.clip(lgd, 0.0, 1.0), 4)
    return clipped
