"""The holdout a gate grades on when its snapshot is bigger than it needs to hold in memory.

A holdout snapshot of more than ``GateRules.max_holdout_rows`` rows is not loaded whole: the
gate grades on a seeded uniform sample of that many rows, drawn in one streamed pass
(``tasks.data.streaming.reservoir_sample``, seeded by ``GateRules.seed``: the same holdout and
rules give the same sample). The decision and the model card say so ("graded on 500,000 of
4,000,000 holdout rows (seeded sample)").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from registry.errors import NotFoundError

if TYPE_CHECKING:
    from registry.store import Registry
    from tasks.gate.evaluate import GateRules

__all__ = ["holdout_frame"]


def holdout_frame(
    registry: Registry, digest: str, rules: GateRules
) -> tuple[pd.DataFrame, int | None]:
    """The frame to grade on and, where it is a sample, the snapshot's row count."""
    from tasks.data.snapshots import read_snapshot
    from tasks.data.streaming import BATCH_ROWS, iter_snapshot, reservoir_sample

    try:
        rows = registry.catalog.get_dataset(digest).rows
    except NotFoundError:  # bytes stored without a dataset row: their size is unknown
        return read_snapshot(registry, digest), None
    if rows <= rules.max_holdout_rows:
        return read_snapshot(registry, digest), None
    batches = iter_snapshot(registry, digest, batch_rows=BATCH_ROWS)
    return reservoir_sample(batches, rules.max_holdout_rows, rules.seed), rows
