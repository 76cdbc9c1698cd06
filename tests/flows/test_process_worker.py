"""A process worker on a work pool runs a deployment, as in production: started in a folder
of its own, it enters the code folder the deployment's pull step finds, loads the flow file by
path in a fresh process, with the settings of its own environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from retrain.config.settings import Settings
from retrain.config.specs import default_spec_paths, load_spec
from retrain.config.wiring import build_registry

MODEL = "loan-default"
POOL = "test-process-pool"


def _two_champions(settings: Settings) -> None:
    """v1 was champion, v2 is: a rollback has somewhere to go."""
    registry = build_registry(settings)
    try:
        catalog = registry.catalog
        for n in (1, 2):
            digest = registry.put_bytes(f"bundle {n}".encode())
            catalog.register_model_version(MODEL, digest, metrics={}, lineage={})
            expected = n - 1 if n > 1 else None
            catalog.set_alias(
                MODEL, "champion", n, expected=expected, reason="promoted", actor="test"
            )
    finally:
        registry.close()


def test_a_process_worker_runs_the_rollback_deployment(
    tmp_path: Path, prefect_harness: None
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    from retrain.deployments import build_deployments, deployment_names

    settings = Settings(home=tmp_path / "home")
    _two_champions(settings)
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
    spec = load_spec(next(p for p in default_spec_paths() if p.stem == MODEL))
    rollback = next(
        d
        for d in build_deployments(spec, work_pool_name=POOL)
        if d.name == deployment_names(MODEL).rollback
    )
    rollback.apply()
    run = run_deployment(
        f"rollback-model/{rollback.name}",
        parameters={"model": MODEL, "reason": "bad champion"},
        timeout=0,
    )
    env = {
        **{k: v for k, v in os.environ.items() if k != "RETRAIN_CODE_DIR"},
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "RETRAIN_HOME": str(settings.home),
    }
    worker = subprocess.run(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--run-once"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state  # type: ignore[union-attr]
    assert state is not None and state.is_completed(), (state, worker.stdout[-3000:])
    registry = build_registry(settings)
    try:
        assert registry.catalog.get_alias(MODEL, "champion") == 1
        rolled = registry.catalog.events(MODEL, kinds=["model.rolled_back"])
        assert [e.reason for e in rolled] == ["bad champion"]
    finally:
        registry.close()
