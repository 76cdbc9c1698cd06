"""The data gates as Prefect tasks: inside a flow they store results and publish artifacts."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest

from registry.errors import DataValidationError
from registry.store import Registry
from retrain.config.specs import DEFAULT_SPECS_DIR, load_spec
from tasks.data.simulator import simulate


@pytest.mark.usefixtures("prefect_harness")
def test_gates_in_a_flow_store_results_and_publish_artifacts(registry: Registry) -> None:
    from prefect import flow
    from prefect.artifacts import Artifact

    from tasks.pipeline_tasks import PREFECT_STEPS, detect_drift_task

    plan = load_spec(DEFAULT_SPECS_DIR / "loan-default.yaml").plan
    bad_plan = replace(plan, training=replace(plan.training, model="bad"))
    steps = PREFECT_STEPS

    @flow(name="data-gates")
    def data_gates() -> tuple[bool, bool, str]:
        reference_frame = simulate(3_000, seed=1)
        reference = steps.prepare(registry, plan, reference_frame)
        current = steps.prepare(registry, plan, simulate(3_000, scenario="covariate_shift", seed=2))
        checked = steps.validate(registry, plan, reference_frame, reference)
        drift = detect_drift_task(
            registry, reference.batch.digest, current.batch.digest, plan.drift, name="loans"
        )
        bad_frame = simulate(3_000, scenario="nulls", seed=3)
        with contextlib.suppress(DataValidationError):
            steps.validate(registry, bad_plan, bad_frame, steps.prepare(registry, plan, bad_frame))
        return checked.success, drift.drifted, reference.batch.digest

    passed, drifted, reference_digest = data_gates()
    assert (passed, drifted) == (True, True)
    validations = registry.catalog.artifacts(kind="validation")
    assert [(a.name, a.meta["success"]) for a in validations] == [
        ("loan-default", True),
        ("bad", False),
    ]
    assert validations[0].meta["dataset_digest"] == reference_digest
    report = registry.catalog.latest_artifact("drift_report", "loans")
    assert report is not None and report.meta["reference_digest"] == reference_digest
    for key in ("validation-loan-default", "validation-bad", "drift-loans", "drift-loans-report"):
        assert Artifact.get(key) is not None, key
