"""prefect.yaml: generated from the shipped specs, never stale; every deployment loads a real
flow with parameters it accepts, and agrees with what ``retrain up`` serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import retrain.cli  # noqa: F401  (attaches every command to the app)
from retrain.cli.app import app
from retrain.config.specs import default_spec_paths, load_spec
from retrain.deployments import build_deployments, deployment_names
from retrain.prefect_yaml import LOCAL_POOL, render_prefect_yaml
from tasks.data.drift_events import DRIFT_EVENT

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "prefect.yaml"


def _deployments() -> list[dict[str, Any]]:
    raw = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    deployments: list[dict[str, Any]] = raw["deployments"]
    return deployments


def test_checked_in_prefect_yaml_is_what_export_writes() -> None:
    rendered = render_prefect_yaml([load_spec(p) for p in default_spec_paths()])
    assert PREFECT_YAML.read_text(encoding="utf-8") == rendered, (
        "prefect.yaml is stale: run `retrain pipelines export`"
    )


def test_export_writes_the_file_and_check_spots_a_stale_one(home: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    target = tmp_path / "prefect.yaml"
    written = runner.invoke(app, ["pipelines", "export", "--output", str(target)])
    assert written.exit_code == 0, written.output
    specs = len(default_spec_paths())
    assert f"{specs * 4} deployments of {specs} pipelines" in written.output
    assert target.read_text(encoding="utf-8") == PREFECT_YAML.read_text(encoding="utf-8")
    fresh = runner.invoke(app, ["pipelines", "export", "--check", "--output", str(target)])
    assert fresh.exit_code == 0 and "up to date" in fresh.output
    target.write_text(target.read_text(encoding="utf-8").replace("0 3 * * 1", "0 4 * * 1"))
    stale = runner.invoke(app, ["pipelines", "export", "--check", "--output", str(target)])
    assert stale.exit_code == 1 and "stale" in stale.output
    assert "0 4 * * 1" in target.read_text(encoding="utf-8")  # --check never writes


@pytest.mark.parametrize("deployment", _deployments(), ids=lambda d: d["name"])
def test_every_deployment_loads_a_real_flow(deployment: dict[str, Any]) -> None:
    from prefect import Flow
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from prefect.flows import load_flow_from_entrypoint

    flow: object = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
    assert isinstance(flow, Flow)
    # Default parameters, and those a trigger adds, must fit the flow's signature.
    parameters = deployment.get("parameters", {})
    flow.validate_parameters(parameters)
    for trigger in deployment.get("triggers", []):
        parsed = DeploymentEventTrigger.model_validate(trigger)
        assert parsed.expect == {DRIFT_EVENT}
        assert parsed.for_each == {"prefect.resource.id"}
        flow.validate_parameters({**parameters, **(parsed.parameters or {})})
    if "concurrency_limit" in deployment:
        assert ConcurrencyLimitConfig.model_validate(deployment["concurrency_limit"]).limit == 1
    assert deployment["work_pool"]["name"] == LOCAL_POOL


def test_prefect_yaml_matches_the_shipped_specs() -> None:
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

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
        built_trigger = built[names.retrain_on_drift].triggers[0]
        declared_trigger = DeploymentEventTrigger.model_validate(
            declared[names.retrain_on_drift]["triggers"][0]
        )
        fields = ("match", "expect", "for_each", "threshold", "within", "parameters")
        for field in fields:
            assert getattr(declared_trigger, field) == getattr(built_trigger, field), field
        assert declared_trigger.match.get("prefect.resource.id") == [f"ml.model.{spec.name}"]
