"""Split a frame into training rows and a frozen holdout the gate judges every model on."""

from __future__ import annotations

import numpy as np
import pandas as pd

from registry.errors import ConfigError

__all__ = ["holdout_rows", "split_holdout"]


def split_holdout(
    frame: pd.DataFrame, fraction: float, *, time_column: str = "event_time", seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training, holdout). The holdout is the latest ``fraction`` of rows by ``time_column``
    (models are judged on the future they will serve), or a seeded random share without one."""
    n_hold = holdout_rows(len(frame), fraction)
    if time_column in frame.columns:
        order = np.argsort(frame[time_column].to_numpy(), kind="stable")
    else:
        order = np.random.default_rng(seed).permutation(len(frame))
    train, hold = np.sort(order[:-n_hold]), np.sort(order[-n_hold:])
    return (
        frame.iloc[train].reset_index(drop=True),
        frame.iloc[hold].reset_index(drop=True),
    )


def holdout_rows(total: int, fraction: float) -> int:
    """How many of ``total`` rows a ``fraction`` holdout takes; ``ConfigError`` when the
    fraction is not strictly between 0 and 1 or leaves either part empty."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"holdout fraction must be between 0 and 1, got {fraction}")
    n_hold = round(total * fraction)
    if n_hold < 1 or n_hold >= total:
        raise ConfigError(f"{total} rows are too few for a {fraction:.0%} holdout")
    return n_hold
