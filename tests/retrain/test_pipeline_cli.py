"""``retrain pipelines``: what a data scientist types to add a model by spec alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import retrain.cli  # noqa: F401  (attaches every command to the app)
from retrain.cli.app import app
from retrain.config.specs import DEFAULT_SPECS_DIR

LOAN = DEFAULT_SPECS_DIR / "loan-default.yaml"
LGD = DEFAULT_SPECS_DIR / "loss-given-default.yaml"


def test_register_ls_show_without_a_prefect_server(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("retrain.deployments.prefect_api_url", lambda **_: None)
    runner = CliRunner()
    for spec in (LOAN, LGD):
        result = runner.invoke(app, ["pipelines", "register", str(spec)])
        assert result.exit_code == 0, result.output
        assert "registered" in result.output
        assert "retrain up" in result.output
    again = runner.invoke(app, ["pipelines", "register", str(LOAN)])
    assert "unchanged" in again.output
    listing = runner.invoke(app, ["pipelines", "ls"])
    assert "loan-default" in listing.output and "loss-given-default" in listing.output
    assert "regression" in listing.output
    shown = runner.invoke(app, ["pipelines", "show", "loss-given-default"])
    assert shown.exit_code == 0
    assert "target: loss_given_default" in shown.output
    assert "retrain-on-drift-loss-given-default" in shown.output


@pytest.mark.usefixtures("prefect_harness")
def test_register_creates_deployments_when_prefect_is_reachable(home: Path) -> None:
    from prefect.client.orchestration import get_client

    result = CliRunner().invoke(app, ["pipelines", "register", str(LGD)])
    assert result.exit_code == 0, result.output
    with get_client(sync_client=True) as client:
        drift = client.read_deployment_by_name("retrain-model/retrain-on-drift-loss-given-default")
        retrain = client.read_deployment_by_name("retrain-model/retrain-loss-given-default")
        limit = client.read_global_concurrency_limit_by_name("retrain-loss-given-default")
    assert drift.global_concurrency_limit is not None
    assert drift.global_concurrency_limit.limit == 1
    assert drift.concurrency_options is not None
    assert drift.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert retrain.schedules[0].schedule.cron == "30 3 * * 1"  # type: ignore[union-attr]
    assert limit.limit == 1


def test_a_bad_spec_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "loan-default.yaml"
    bad.write_text(LOAN.read_text().replace("floor: 0.65", "floor: 1.5"))
    env = {**os.environ, "RETRAIN_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from retrain.cli import main; main()",
            "pipelines",
            "register",
            str(bad),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: spec loan-default.yaml: gate.floor: roc_auc lies in [0, 1]; got 1.5"
    )
    assert "Traceback" not in done.stderr


def test_serve_with_nothing_registered_serves_the_shipped_pipelines(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from retrain.local.serve_loop import SpecSource

    served: list[str] = []

    def record(source: SpecSource, **_: object) -> None:  # what the live loop would serve
        served.extend(source.digests())

    monkeypatch.setattr("retrain.local.serve_loop.serve_live", record)
    runner = CliRunner()
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        result = runner.invoke(app, ["pipelines", "serve"])
        assert result.exit_code == 0, result.output
        assert served == ["loan-default", "loss-given-default"]
        assert "registered shipped pipeline loan-default" in result.output
        listing = runner.invoke(app, ["pipelines", "ls"])
        assert "loan-default" in listing.output and "loss-given-default" in listing.output
        served.clear()
        again = runner.invoke(app, ["pipelines", "serve", "loss-given-default"])
        assert again.exit_code == 0, again.output
        assert served == ["loss-given-default"]
        assert "registered shipped" not in again.output
        unknown = runner.invoke(app, ["pipelines", "serve", "no-such-model"])
        assert unknown.exit_code != 0


def test_serve_without_any_prefect_api_is_one_line(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {"RETRAIN_HOME": str(home), "PREFECT_HOME": str(home.parent / "prefect")}
    done = subprocess.run(
        [sys.executable, "-m", "retrain", "pipelines", "serve"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: no Prefect API: PREFECT_API_URL is not set")
    assert len(done.stderr.strip().splitlines()) == 1
