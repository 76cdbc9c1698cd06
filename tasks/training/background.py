"""The background sample a version is explained against (``serving.explain``).

A seeded sample of the training rows' raw feature columns (features only: no target, nothing
else), stored as deterministic Parquet under its digest; the version's lineage names it as
``background_digest``. The bundle itself is unchanged: a version without one is explained
against its preprocessor's baseline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tasks.data.snapshots import PARQUET_MEDIA_TYPE, to_parquet_bytes

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["BACKGROUND_ROWS", "background_sample", "store_background"]

BACKGROUND_ROWS = 64


def background_sample(
    frame: pd.DataFrame,
    rows: np.ndarray,
    features: list[str],
    *,
    seed: int,
    size: int = BACKGROUND_ROWS,
) -> pd.DataFrame:
    """``size`` of ``frame``'s ``rows`` (positions), drawn with ``seed``, in their original
    order, ``features`` columns only; the same inputs always give the same frame."""
    rng = np.random.default_rng(seed)
    take = min(size, len(rows))
    chosen = np.sort(rng.choice(np.asarray(rows), size=take, replace=False))
    return frame.iloc[chosen][features].reset_index(drop=True)


def store_background(registry: Registry, sample: pd.DataFrame) -> str:
    """Store a background sample (``background_sample``) as deterministic Parquet; its digest."""
    return registry.put_bytes(to_parquet_bytes(sample), media_type=PARQUET_MEDIA_TYPE)
