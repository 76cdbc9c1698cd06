"""Prefect tasks over the data gates (thin: call the plain function, return its result)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.drift import DriftPolicy, DriftResult, detect_drift, record_drift
from tasks.snapshots import load_frame, read_snapshot, take_snapshot
from tasks.validation import ValidationResult, validate_and_record

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["detect_drift_task", "load_dataset", "snapshot_dataset", "validate_snapshot"]

# Registries are live clients and frames are large: inputs are not hashed for caching.
load_dataset = task(name="load-dataset", cache_policy=NO_CACHE)(load_frame)
"""Read a file, folder, ``s3://`` prefix or ``simulator://`` source into a frame."""

snapshot_dataset = task(name="snapshot-dataset", cache_policy=NO_CACHE)(take_snapshot)
"""Freeze the frame as deterministic Parquet in the registry."""


def _frame(registry: Registry, data: pd.DataFrame | str) -> pd.DataFrame:
    """A frame as given, or read from the registry when ``data`` is a snapshot digest."""
    return read_snapshot(registry, data) if isinstance(data, str) else data


@task(name="validate-snapshot", cache_policy=NO_CACHE)
def validate_snapshot(
    registry: Registry,
    data: pd.DataFrame | str,
    contract: str | Path = "loans",
    *,
    name: str,
    dataset_digest: str | None = None,
) -> ValidationResult:
    """Check the snapshot against its contract; store the result; raise if it failed."""
    digest = dataset_digest or (data if isinstance(data, str) else None)
    return validate_and_record(
        registry, _frame(registry, data), contract, name=name, dataset_digest=digest
    )


@task(name="detect-drift", cache_policy=NO_CACHE)
def detect_drift_task(
    registry: Registry,
    reference: pd.DataFrame | str,
    current: pd.DataFrame | str,
    policy: DriftPolicy | None = None,
    *,
    name: str,
    meta: dict[str, Any] | None = None,
) -> DriftResult:
    """Measure drift of current against reference; store and publish the HTML report."""
    result = detect_drift(_frame(registry, reference), _frame(registry, current), policy)
    digests = {
        f"{role}_digest": data
        for role, data in (("reference", reference), ("current", current))
        if isinstance(data, str)
    }
    record_drift(registry, result, name=name, meta={**digests, **(meta or {})})
    return result
