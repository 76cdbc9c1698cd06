"""``retrain train`` and ``retrain evaluate`` as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import retrain.cli  # noqa: F401  (attaches every command module to the app)
from registry.errors import ConfigError
from retrain.cli.app import app
from retrain.config.specs import DEFAULT_SPECS_DIR


def write_spec(path: Path, **gate: float) -> Path:
    """The shipped loan-default spec, made small: 1,500 simulated rows, a tiny net, 2 epochs."""
    spec = yaml.safe_load((DEFAULT_SPECS_DIR / "loan-default.yaml").read_text())
    spec["dataset"]["source"] = "simulator://loans?scenario=stable&rows=1500&seed=1"
    spec["model"] = {"hidden_sizes": [16]}
    spec["training"].update(max_epochs=2, batch_size=256)
    spec["gate"].update({"floor": 0.3, "latency_p95_ms": 500, **gate})
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def workdir(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shared CLI home, run from a scratch folder that also holds the specs."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_train_then_evaluate_from_a_spec(workdir: Path) -> None:
    spec = write_spec(workdir / "train.yaml")
    runner = CliRunner()
    trained = runner.invoke(app, ["train", str(spec)])
    assert trained.exit_code == 0, trained.output
    assert "loan-default v1 (candidate)" in trained.output
    assert "retrain evaluate loan-default:1" in trained.output
    judged = runner.invoke(app, ["evaluate", "loan-default:1"])
    assert judged.exit_code == 0, judged.output
    assert "PASS" in judged.output and "first model" in judged.output
    strict = write_spec(workdir / "strict.yaml", floor=0.999)
    failed = runner.invoke(app, ["evaluate", "loan-default", "--spec", str(strict)])
    assert failed.exit_code == 1 and "FAIL" in failed.output


def test_a_bad_spec_is_one_clear_error(workdir: Path) -> None:
    spec = write_spec(workdir / "bad.yaml")
    spec.write_text(spec.read_text().replace("task: binary", "task: binary\nepochz: 3"))
    result = CliRunner().invoke(app, ["train", str(spec)])
    assert isinstance(result.exception, ConfigError)
    assert "spec bad.yaml: epochz: unknown field" in str(result.exception)
