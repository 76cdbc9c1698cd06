"""prefect.yaml: every deployment loads, points at a real flow, and matches the specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from retrain.config.specs import default_spec_paths, load_spec
from retrain.deployments import DRIFT_EVENT, build_deployments, deployment_names

ROOT = Path(__file__).resolve().parents[2]


def _deployments() -> list[dict[str, Any]]:
    from prefect.cli.deploy._models import PrefectYamlModel

    raw = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    PrefectYamlModel.model_validate(raw)  # Prefect's own reading of the file
    deployments: list[dict[str, Any]] = raw["deployments"]
    return deployments


@pytest.mark.parametrize("deployment", _deployments(), ids=lambda d: d["name"])
def test_every_deployment_loads_a_real_flow(deployment: dict[str, Any]) -> None:
    from prefect import Flow
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from prefect.flows import load_flow_from_entrypoint

    flow: object = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
    assert isinstance(flow, Flow)
    # Default parameters must fit the flow's signature.
    flow.validate_parameters(deployment.get("parameters", {}))
    for trigger in deployment.get("triggers", []):
        parsed = DeploymentEventTrigger.model_validate(trigger)
        assert parsed.expect == {DRIFT_EVENT}
        assert parsed.for_each == {"prefect.resource.id"}
    if "concurrency_limit" in deployment:
        assert ConcurrencyLimitConfig.model_validate(deployment["concurrency_limit"]).limit == 1
    assert deployment["work_pool"]["name"] == "retrain-local"


def test_prefect_yaml_matches_the_shipped_specs() -> None:
    declared = {d["name"]: d for d in _deployments()}
    for path in default_spec_paths():
        spec = load_spec(path)
        names = deployment_names(spec.name)
        built = {d.name: d for d in build_deployments(spec)}
        assert set(built) == {names.retrain, names.monitor, names.retrain_on_drift, names.rollback}
        assert set(built) <= set(declared), f"prefect.yaml lacks deployments of {spec.name}"
        crons = {
            names.retrain: spec.schedule.retrain_cron,
            names.monitor: spec.schedule.monitor_cron,
        }
        for name, cron in crons.items():
            assert [s["cron"] for s in declared[name].get("schedules", [])] == [cron]
            assert [s.schedule.cron for s in built[name].schedules or []] == [cron]  # type: ignore[union-attr]
        for name in (names.retrain, names.retrain_on_drift):
            assert built[name].concurrency_limit == 1
        from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

        built_trigger = built[names.retrain_on_drift].triggers[0]
        declared_trigger = DeploymentEventTrigger.model_validate(
            declared[names.retrain_on_drift]["triggers"][0]
        )
        fields = ("match", "expect", "for_each", "threshold", "within", "parameters")
        for field in fields:
            assert getattr(declared_trigger, field) == getattr(built_trigger, field), field
        assert declared_trigger.match.get("prefect.resource.id") == [f"ml.model.{spec.name}"]
