"""The data gates as Prefect tasks: inside a flow they store results and publish artifacts."""

from __future__ import annotations

import contextlib

import pytest

from registry.errors import DataValidationError
from registry.store import Registry
from tasks.data.simulator import simulate


@pytest.mark.usefixtures("prefect_harness")
def test_gates_in_a_flow_store_results_and_publish_artifacts(registry: Registry) -> None:
    from prefect import flow
    from prefect.artifacts import Artifact
    from tasks.data_tasks import detect_drift_task, snapshot_dataset, validate_snapshot

    @flow(name="data-gates")
    def data_gates() -> tuple[bool, bool]:
        reference = snapshot_dataset(registry, "loans", simulate(3_000, seed=1))
        current = snapshot_dataset(
            registry, "loans", simulate(3_000, scenario="covariate_shift", seed=2)
        )
        checked = validate_snapshot(registry, reference.digest, name="loans")
        drift = detect_drift_task(registry, reference.digest, current.digest, name="loans")
        with contextlib.suppress(DataValidationError):
            validate_snapshot(registry, simulate(3_000, scenario="nulls", seed=3), name="bad")
        return checked.success, drift.drifted

    assert data_gates() == (True, True)
    assert [a.meta["success"] for a in registry.catalog.artifacts(kind="validation")] == [
        True,
        False,
    ]
    report = registry.catalog.latest_artifact("drift_report", "loans")
    assert report is not None and report.meta["reference_digest"].startswith("sha256:")
    for key in ("validation-loans", "validation-bad", "drift-loans", "drift-loans-report"):
        assert Artifact.get(key) is not None, key
