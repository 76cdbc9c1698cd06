"""Deployments that travel: every deployment carries a pull step into the code folder of the
worker that runs it and an entrypoint relative to it, whether it comes from ``prefect deploy
--all`` (the exported ``prefect.yaml``) or ``retrain pipelines register --work-pool``; one
export puts every deployment in the Kubernetes pool with its image."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import retrain.cli  # noqa: F401  (attaches every command to the app)
from registry.errors import ConfigError
from retrain.cli.app import app
from retrain.config.specs import DEFAULT_SPECS_DIR, default_spec_paths
from retrain.deployments import ENTRYPOINTS, deployment_names
from retrain.work_pools import CODE_DIR_ENV, PULL_STEP, enter_code_dir

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "ghcr.io/acme/retrain:1.4.0"


def _exported(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def test_one_export_puts_every_deployment_in_the_kubernetes_pool(
    home: Path, tmp_path: Path
) -> None:
    target = tmp_path / "prefect-k8s.yaml"
    options = ["--pool", "retrain-k8s", "--image", IMAGE, "--output", str(target)]
    runner = CliRunner()
    written = runner.invoke(app, ["pipelines", "export", *options])
    assert written.exit_code == 0, written.output
    assert f"(pool retrain-k8s, image {IMAGE})" in " ".join(written.output.split())
    document = _exported(target)
    assert document["pull"] == [{PULL_STEP: {}}]
    deployments = document["deployments"]
    assert len(deployments) == 4 * len(default_spec_paths())
    for deployment in deployments:
        assert deployment["work_pool"] == {
            "name": "retrain-k8s",
            "work_queue_name": "default",
            "job_variables": {"image": IMAGE},
        }, deployment["name"]
        assert deployment["entrypoint"] in ENTRYPOINTS.values()
    checked = runner.invoke(app, ["pipelines", "export", "--check", *options])
    assert checked.exit_code == 0 and "up to date" in checked.output


def test_the_checked_in_prefect_yaml_finds_the_code_on_each_worker() -> None:
    document = _exported(ROOT / "prefect.yaml")
    assert document["pull"] == [{PULL_STEP: {}}]
    for deployment in document["deployments"]:
        assert not Path(deployment["entrypoint"]).is_absolute()
        assert "job_variables" not in deployment["work_pool"]


def test_export_refuses_an_empty_image(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "prefect-k8s.yaml"
    result = CliRunner().invoke(app, ["pipelines", "export", "--image", " ", "-o", str(target)])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == "--image must not be empty"
    assert not target.exists()


def test_the_pull_step_enters_the_code_folder_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(CODE_DIR_ENV, raising=False)
    assert enter_code_dir() == {"directory": str(ROOT)}
    assert Path.cwd() == ROOT
    os.chdir(tmp_path)
    monkeypatch.setenv(CODE_DIR_ENV, str(ROOT))
    assert enter_code_dir()["directory"] == str(ROOT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv(CODE_DIR_ENV, str(elsewhere))
    with pytest.raises(ConfigError) as refused:
        enter_code_dir()
    assert str(refused.value) == (
        f"RETRAIN_CODE_DIR {elsewhere} holds no flows/ folder: point RETRAIN_CODE_DIR on the "
        "worker at the folder holding the platform's code"
    )
    assert enter_code_dir(str(ROOT))["directory"] == str(ROOT)  # the deployment's own wins


@pytest.mark.usefixtures("prefect_harness")
def test_register_with_a_work_pool_records_the_pull_step_not_this_folder(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    pool = "travel-pool"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"), overwrite=True)
    elsewhere = tmp_path / "operator"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # registered from a folder that is not the checkout
    spec = DEFAULT_SPECS_DIR / "loss-given-default.yaml"
    result = CliRunner().invoke(app, ["pipelines", "register", str(spec), "--work-pool", pool])
    assert result.exit_code == 0, result.output
    assert f"Any worker of {pool} runs them" in " ".join(result.output.split())
    names = deployment_names("loss-given-default")
    flows = {
        names.retrain: "retrain-model",
        names.monitor: "monitor-drift",
        names.retrain_on_drift: "retrain-model",
        names.rollback: "rollback-model",
    }
    with get_client(sync_client=True) as client:
        for name, flow in flows.items():
            deployment = client.read_deployment_by_name(f"{flow}/{name}")
            assert deployment.work_pool_name == pool
            assert deployment.entrypoint == ENTRYPOINTS[flow]
            # The pull step decides where the flow loads from (a stored path is never read).
            assert deployment.pull_steps == [{PULL_STEP: {}}]


@pytest.mark.usefixtures("prefect_harness")
def test_register_puts_a_model_in_the_kubernetes_pool_with_its_image(home: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(name="travel-k8s", type="kubernetes"), overwrite=True
        )
    spec = DEFAULT_SPECS_DIR / "loan-default.yaml"
    options = ["--work-pool", "travel-k8s", "--image", IMAGE, "--no-check"]
    result = CliRunner().invoke(app, ["pipelines", "register", str(spec), *options])
    assert result.exit_code == 0, result.output
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("retrain-model/retrain-loan-default")
    assert deployment.work_pool_name == "travel-k8s"
    assert deployment.job_variables == {"image": IMAGE}
    assert deployment.pull_steps == [{PULL_STEP: {}}]


def test_a_spec_that_trains_on_a_gpu_sends_its_retrains_to_the_gpu_pool() -> None:
    from retrain.config.specs import PipelineSpec, load_spec
    from retrain.prefect_yaml import render_prefect_yaml

    base = load_spec(default_spec_paths()[0])
    raw = base.model_dump()
    raw["training"]["accelerator"] = "gpu"
    gpu = PipelineSpec.model_validate({**raw, "name": "gpu-model"})
    document = yaml.safe_load(render_prefect_yaml([base, gpu], pool="retrain-k8s", image=IMAGE))
    pools = {d["name"]: d["work_pool"]["name"] for d in document["deployments"]}
    assert pools["retrain-gpu-model"] == pools["retrain-on-drift-gpu-model"] == "retrain-k8s-gpu"
    assert pools["monitor-gpu-model"] == pools["rollback-gpu-model"] == "retrain-k8s"
    assert {pools[f"{kind}-{base.name}"] for kind in ("retrain", "monitor")} == {"retrain-k8s"}
    local = yaml.safe_load(render_prefect_yaml([gpu]))  # a process pool has no GPU pool
    assert {d["work_pool"]["name"] for d in local["deployments"]} == {"retrain-local"}
