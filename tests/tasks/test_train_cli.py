"""``retrain train`` and ``retrain evaluate`` as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import retrain.cli  # noqa: F401  (attaches every command module to the app)
from registry.errors import ConfigError
from retrain.cli.app import app

CONFIG = """
name: loan-default
target: default
task: binary
source: "simulator://loans?scenario=stable&rows=1500&seed=1"
features:
  numeric: [age, annual_income, credit_score, debt_to_income, credit_utilization]
  categorical: [region, employment]
model: {hidden_sizes: [16]}
training: {max_epochs: 2, batch_size: 256}
gate: {floor: 0.3, latency_p95_ms: 500}
"""


@pytest.fixture
def workdir(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shared CLI home, run from a scratch folder that also holds the configs."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_train_then_evaluate_from_a_config(workdir: Path) -> None:
    config = workdir / "train.yaml"
    config.write_text(CONFIG)
    runner = CliRunner()
    trained = runner.invoke(app, ["train", str(config)])
    assert trained.exit_code == 0, trained.output
    assert "loan-default v1 (candidate)" in trained.output
    assert "retrain evaluate loan-default:1" in trained.output
    judged = runner.invoke(app, ["evaluate", "loan-default:1"])
    assert judged.exit_code == 0, judged.output
    assert "PASS" in judged.output and "first model" in judged.output
    strict = workdir / "strict.yaml"
    strict.write_text(CONFIG.replace("floor: 0.3", "floor: 0.999"))
    failed = runner.invoke(app, ["evaluate", "loan-default", "--spec", str(strict)])
    assert failed.exit_code == 1 and "FAIL" in failed.output


def test_a_bad_config_is_one_clear_error(workdir: Path) -> None:
    config = workdir / "bad.yaml"
    config.write_text(CONFIG.replace("task: binary", "task: binary\nepochz: 3"))
    result = CliRunner().invoke(app, ["train", str(config)])
    assert isinstance(result.exception, ConfigError)
    assert "unknown field(s) epochz" in str(result.exception)
