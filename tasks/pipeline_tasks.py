"""Prefect tasks a pipeline run needs around the gates: splitting, reuse, run records."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.drift_events import signal_drift
from tasks.holdout import split_holdout
from tasks.pipeline_runs import find_completed_run, freeze_holdout, record_run
from tasks.snapshots import Snapshot, take_snapshot

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = [
    "find_reusable_run",
    "freeze_promoted_holdout",
    "record_retrain",
    "signal_drift_task",
    "split_snapshot",
]


# Registries are live clients and frames are large: inputs are not hashed for caching.
@task(name="split-snapshot", cache_policy=NO_CACHE)
def split_snapshot(
    registry: Registry, name: str, frame: pd.DataFrame, holdout_fraction: float
) -> tuple[Snapshot, Snapshot]:
    """Training rows and the latest rows held out, each snapshotted in the registry."""
    training, holdout = split_holdout(frame, holdout_fraction)
    return (
        take_snapshot(registry, f"{name}-training", training),
        take_snapshot(registry, f"{name}-holdout", holdout),
    )


find_reusable_run = task(name="find-reusable-run", cache_policy=NO_CACHE)(find_completed_run)
record_retrain = task(name="record-retrain", cache_policy=NO_CACHE)(record_run)
freeze_promoted_holdout = task(name="freeze-promoted-holdout", cache_policy=NO_CACHE)(
    freeze_holdout
)
signal_drift_task = task(name="signal-drift", cache_policy=NO_CACHE)(signal_drift)
