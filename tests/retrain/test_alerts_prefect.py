"""Alerts against a real Prefect API: runs are counted where Prefect keeps them."""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from uuid import UUID

import pytest

from registry.store import Registry
from retrain.alerts.launchers import PrefectLauncher
from retrain.alerts.receiver import create_app
from retrain.deployments import build_deployments

with warnings.catch_warnings():  # Starlette prefers httpx2 for its test client; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def _flow_runs_per_model(deployment_ids: dict[str, str]) -> dict[str, int]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    counts = {}
    with get_client(sync_client=True) as client:
        for model, deployment_id in deployment_ids.items():
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(
                    id=DeploymentFilterId(any_=[UUID(deployment_id)])
                )
            )
            counts[model] = len(runs)
    return counts


def _deploy_retrains(specs: list) -> dict[str, str]:  # type: ignore[type-arg]
    """Apply each model's retrain deployment (the real retrain flow); model -> deployment id."""
    return {spec.name: str(build_deployments(spec)[0].apply()) for spec in specs}


@pytest.mark.usefixtures("prefect_harness")
def test_alert_storms_create_one_prefect_flow_run_per_model(
    registry: Registry, kit: SimpleNamespace
) -> None:
    models = [f"storm-{i}" for i in range(10)]
    deployment_ids = _deploy_retrains(kit.register_models(registry, models))
    headers = {"Authorization": f"Bearer {kit.token}"}
    app = create_app(registry, PrefectLauncher(), token=kit.token)
    with TestClient(app) as client:
        repeat = kit.alertmanager_body(models[0], fingerprint="same")
        for _ in range(100):  # one alert, repeated: one run
            assert (
                client.post("/alerts/alertmanager", content=repeat, headers=headers).status_code
                == 202
            )
        for i in range(1000):  # a storm over ten models: at most one run each
            body = kit.alertmanager_body(models[i % 10], fingerprint=f"fp-{i}")
            assert (
                client.post("/alerts/alertmanager", content=body, headers=headers).status_code
                == 202
            )
        assert client.app.state.dispatcher.drain(timeout_s=120)  # type: ignore[attr-defined]
    assert _flow_runs_per_model(deployment_ids) == {m: 1 for m in models}
    assert registry.catalog.pending_alerts() == []
