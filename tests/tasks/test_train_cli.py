"""``retrain train`` and ``retrain evaluate`` as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import retrain.cli  # noqa: F401  (attaches every command module to the app)
from registry.errors import ConfigError
from retrain.cli.app import app
from retrain.cli.common import open_registry
from retrain.config.specs import DEFAULT_SPECS_DIR


def write_spec(path: Path, **gate: float) -> Path:
    """The shipped loan-default spec, made small: 1,500 simulated rows, a tiny net, 2 epochs."""
    spec = yaml.safe_load((DEFAULT_SPECS_DIR / "loan-default.yaml").read_text())
    spec["dataset"]["source"] = "simulator://loans?scenario=stable&rows=1500&seed=1"
    spec["model"] = {"hidden_sizes": [16]}
    spec["training"].update(max_epochs=2, batch_size=256)
    spec["gate"].update({"floor": 0.3, "latency_p95_ms": 500, **gate})
    spec["gate"].pop("behaviour", None)  # two epochs do not learn every direction
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


def test_training_the_same_data_spec_and_code_again_reuses_the_version(workdir: Path) -> None:
    spec = write_spec(workdir / "train.yaml")
    runner = CliRunner()
    first = runner.invoke(app, ["train", str(spec)])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["train", str(spec)])
    assert again.exit_code == 0, again.output
    assert "same data, spec and code as v1: reused" in again.output
    assert "retrain evaluate loan-default:1" in again.output
    other = runner.invoke(app, ["train", str(spec), "--epochs", "1"])  # another plan: trains
    assert other.exit_code == 0 and "loan-default v2 (candidate)" in other.output
    with open_registry() as registry:
        versions = registry.catalog.list_model_versions("loan-default")
    assert [v.version for v in versions] == [1, 2]
    assert versions[0].bundle_digest != versions[1].bundle_digest


def test_evaluate_grades_on_the_champions_holdout(workdir: Path) -> None:
    runner = CliRunner()
    trained = runner.invoke(app, ["train", str(write_spec(workdir / "train.yaml"))])
    assert trained.exit_code == 0, trained.output
    released = runner.invoke(app, ["canary", "loan-default", "1"])  # no champion: promoted
    assert released.exit_code == 0, released.output
    newer = runner.invoke(
        app, ["train", str(workdir / "train.yaml"), "simulator://loans?rows=1500&seed=7"]
    )
    assert newer.exit_code == 0, newer.output
    judged = runner.invoke(app, ["evaluate", "loan-default:2"])
    assert "first model" not in judged.output
    with open_registry() as registry:
        champion_holdout = registry.catalog.get_model_version("loan-default", 1).lineage[
            "holdout_digest"
        ]
        own = registry.catalog.get_model_version("loan-default", 2).lineage["holdout_digest"]
        event = registry.catalog.events("loan-default", kinds=["gate.decision"])[-1]
    assert event.payload["holdout_digest"] == champion_holdout != own


def test_a_bad_spec_is_one_clear_error(workdir: Path) -> None:
    spec = write_spec(workdir / "bad.yaml")
    spec.write_text(spec.read_text().replace("task: binary", "task: binary\nepochz: 3"))
    result = CliRunner().invoke(app, ["train", str(spec)])
    assert isinstance(result.exception, ConfigError)
    assert "spec bad.yaml: epochz: unknown field" in str(result.exception)
