"""Prefect tasks a pipeline run needs around the gates: splitting, reuse, run records."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.holdout import split_holdout
from tasks.pipeline_runs import find_completed_run, freeze_holdout, record_run
from tasks.snapshots import Snapshot, take_snapshot

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["find_reusable_run", "freeze_promoted_holdout", "record_retrain", "split_snapshot"]


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


@task(name="find-reusable-run", cache_policy=NO_CACHE)
def find_reusable_run(registry: Registry, model: str, key: str) -> dict[str, Any] | None:
    """An earlier run with the same dataset, spec and code digests, if one finished."""
    return find_completed_run(registry, model, key)


@task(name="record-retrain", cache_policy=NO_CACHE)
def record_retrain(registry: Registry, model: str, key: str, summary: dict[str, Any]) -> None:
    """Append the run's summary to the model's event log."""
    record_run(registry, model, key, summary, actor="retrain-model")


@task(name="freeze-promoted-holdout", cache_policy=NO_CACHE)
def freeze_promoted_holdout(registry: Registry, model: str, digest: str, version: int) -> None:
    """The promoted model's holdout becomes the one later candidates are judged on."""
    freeze_holdout(registry, model, digest, version=version)
