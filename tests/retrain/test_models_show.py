"""``retrain models show NAME[:VERSION]`` answers "from what, by what, why promoted" for a
version trained by the retrain's plain steps: the data, code, spec and contract it came from,
its seed, hyperparameters and environment, the gate's verdict with its numbers, the release
outcome and its events; the model card carries the same lineage."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from registry.store import Registry
from retrain.config.spec_store import get_registered_spec, register_spec
from retrain.config.specs import DEFAULT_SPECS_DIR, parse_spec
from retrain.testing import NullTracker, ScriptedMetricsSource
from retrain.testing_cli import run_cli as retrain
from retrain.testing_serving import register_test_bundle
from tasks.pipeline.cycle import retrain_when_due
from tasks.pipeline.recipe import RetrainEnv, RetrainRequest
from tasks.training.lineage import code_lineage
from tasks.training.plan import TrainingRun

MODEL = "loan-default"
SOURCE = "simulator://loans?scenario=stable&rows=1500&seed=1"
SECTIONS = ("data", "code", "spec", "contract", "seed", "hyperparameters", "environment")
SECTIONS_AFTER = ("gate", "release", "run", "events of v1")


def _train_first_model(registry: Registry, tmp_path: Path) -> None:
    """Register a small loan spec (released at the gate: no model server) and retrain it."""
    raw = yaml.safe_load((DEFAULT_SPECS_DIR / "loan-default.yaml").read_text())
    raw["dataset"]["source"] = SOURCE
    raw["model"] = {"hidden_sizes": [16]}
    raw["training"].update(max_epochs=2, batch_size=256)
    raw["gate"].update(floor=0.3, latency_p95_ms=None, slices=[])
    raw["gate"].pop("behaviour", None)  # two epochs do not learn every direction
    raw["release"] = "gate"
    register_spec(registry, parse_spec(yaml.safe_dump(raw)))
    spec = get_registered_spec(registry, MODEL)
    env = RetrainEnv(
        metrics=ScriptedMetricsSource([]),
        run=TrainingRun(tracker=NullTracker(), checkpoint_root=tmp_path / "checkpoints"),
    )
    now = datetime.now(UTC)
    summary = retrain_when_due(
        registry, spec, RetrainRequest(SOURCE), env, now=now, run_id="run-1", say=lambda _: None
    )
    assert summary.outcome == "promoted", summary


def test_show_answers_from_what_by_what_and_why_promoted(
    registry: Registry, home: Path, tmp_path: Path
) -> None:
    _train_first_model(registry, tmp_path)
    catalog = registry.catalog
    record = catalog.get_model_version(MODEL, 1)
    spec, contract = (
        catalog.latest_artifact("pipeline_spec", MODEL),
        catalog.latest_artifact("contract", MODEL),
    )
    training, holdout = (
        catalog.latest_dataset(f"{MODEL}-training"),
        catalog.latest_dataset(f"{MODEL}-holdout"),
    )
    batch = catalog.latest_dataset(MODEL)
    assert None not in (spec, contract, training, holdout, batch)
    assert spec and contract and training and holdout and batch  # for the type checker
    code, champion = retrain("models", "show", MODEL)
    assert code == 0, champion
    code, first = retrain("models", "show", f"{MODEL}:1")
    assert code == 0 and first == champion  # the champion is the default
    lines = [line.strip() for line in first.splitlines()]
    assert lines[0].startswith(f"{MODEL} v1 (champion): champion, registered ")
    for section in (*SECTIONS, *SECTIONS_AFTER):
        assert any(line.startswith(section) for line in lines), section
    assert f"source: {SOURCE} (from the run)" in lines
    assert f"batch: {batch.digest} ({batch.rows} rows)" in lines
    assert f"training snapshot: {training.digest} ({training.rows} rows)" in lines
    assert f"holdout snapshot (its own): {holdout.digest} ({holdout.rows} rows)" in lines
    assert f"digest: {code_lineage()['code_digest']}" in lines
    assert f"digest: {spec.digest}" in lines and f"digest: {contract.digest}" in lines
    assert f"bundle: {record.bundle_digest}" in lines
    assert lines[lines.index("seed") + 1] == "0"
    assert any(line.startswith("model: hidden_sizes=[16]") for line in lines)
    assert any(line.startswith("python 3.") and ", torch " in line for line in lines)
    assert "verdict: PASS (first model, absolute rules only)" in lines
    assert any(
        line.startswith("roc_auc: candidate 0.") and "floor 0.3000" in line for line in lines
    )
    assert f"graded on: {holdout.digest} ({holdout.rows} rows)" in lines
    assert any(line.startswith("promoted via gate: the gate passed") for line in lines)
    assert "flow run: run-1; trigger: manual" in lines
    assert "mlflow run: null-run-1 (http://127.0.0.1:5000/#/runs/null-run-1)" in lines
    assert "model.registered" in first and "gate.decision" in first and "release.outcome" in first

    # The model card carries the same lineage and the final outcome.
    card_record = catalog.latest_artifact("model_card", f"{MODEL}-v1")
    assert card_record is not None
    card = registry.get_bytes(card_record.digest).decode()
    assert "**Release: PROMOTED VIA GATE**" in card and "## Lineage" in card
    for digest in (training.digest, holdout.digest, spec.digest, contract.digest):
        assert f"`{digest}`" in card
    assert f"- code: `{code_lineage()['code_digest']}`" in card and "- seed: `0`" in card


def test_show_json_is_the_same_record(registry: Registry, home: Path, tmp_path: Path) -> None:
    _train_first_model(registry, tmp_path)
    code, output = retrain("models", "show", MODEL, "--json")
    assert code == 0, output
    shown = json.loads(output)
    record = registry.catalog.get_model_version(MODEL, 1)
    assert (shown["model"], shown["version"], shown["aliases"]) == (MODEL, 1, ["champion"])
    assert shown["bundle_digest"] == record.bundle_digest
    assert shown["data"]["training"]["digest"] == record.lineage["dataset_digest"]
    assert shown["data"]["holdout"]["digest"] == record.lineage["holdout_digest"]
    assert shown["spec"]["digest"] == record.lineage["spec_digest"]
    assert shown["contract"]["digest"] == record.lineage["contract_digest"]
    assert shown["seed"] == 0 and shown["hyperparameters"]["model"]["hidden_sizes"] == [16]
    assert shown["environment"]["torch"] and shown["environment"]["device"] == "cpu"
    assert shown["gate"]["verdict"] == "pass" and shown["gate"]["metric"] == "roc_auc"
    assert shown["release"]["outcome"] == "promoted" and shown["release"]["mode"] == "gate"
    assert {e["event"] for e in shown["events"]} >= {"model.registered", "release.outcome"}


def test_what_was_not_recorded_says_so(registry: Registry, home: Path) -> None:
    register_test_bundle(registry, "loans", seed=3)  # registered by hand: no pipeline run
    code, output = retrain("models", "show", "loans:1")
    assert code == 0, output
    lines = [line.strip() for line in output.splitlines()]
    assert "training snapshot: none recorded" in lines
    assert lines[lines.index("contract") + 1] == "digest: none recorded"
    assert "no gate decision recorded" in lines and "no release recorded" in lines


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("loans:7", "error: loans has no version 7: it has versions 1 to 1"),
        ("loans", "error: loans has no champion: name a version, as in loans:1"),
        ("loans:first", "error: 'loans:first': the version after ':' must be a whole number"),
        ("nobody:1", "error: no model named 'nobody': see `retrain models ls`"),
    ],
)
def test_a_wrong_reference_is_one_line(
    registry: Registry, home: Path, reference: str, message: str
) -> None:
    register_test_bundle(registry, "loans")
    code, output = retrain("models", "show", reference)
    assert code == 2
    assert output.strip().count("\n") == 0 and output.startswith(message), output
