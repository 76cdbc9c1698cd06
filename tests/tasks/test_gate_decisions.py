"""The evaluation gate: poisoned candidates are stopped, better ones pass, all is on record.

Three models are trained once per module; every test then gets its own copy of that registry
(candidates only, no champion), so no test sees what another one recorded or promoted.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from models.config import ModelConfig, TrainingConfig
from registry.errors import ConfigError
from registry.store import Registry
from retrain.config.settings import Settings
from retrain.config.wiring import build_registry
from tasks.data.simulator import FEATURES_CATEGORICAL, FEATURES_NUMERIC, TARGET, simulate
from tasks.gate.evaluate import GateRules, evaluate_candidate
from tasks.training.fit import train_model
from tasks.training.plan import TrainingPlan, TrainingRun

MODEL = "loan-default"
RULES = GateRules(floor=0.6, max_regression=0.01, slices=["region"], latency_p95_ms=250.0)


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Trained once per module: a registry home holding v1 weak, v2 clean, v3 poisoned
    (label_noise) as candidates, no champion; plus a holdout."""
    root = tmp_path_factory.mktemp("gate")
    registry = build_registry(Settings(home=root / "home"))
    plan = TrainingPlan(
        model=MODEL,
        target=TARGET,
        task="binary",
        numeric=FEATURES_NUMERIC,
        categorical=FEATURES_CATEGORICAL,
        architecture=ModelConfig(hidden_sizes=(32,)),
        fitting=TrainingConfig(batch_size=256, patience=2),
    )
    run = TrainingRun(checkpoint_root=root / "checkpoints")

    def train(frame: pd.DataFrame, epochs: int) -> int:
        return train_model(registry, frame, plan.with_fitting(max_epochs=epochs), run).version

    try:
        versions = {
            "weak": train(simulate(300, seed=11), 1),
            "clean": train(simulate(4000, seed=1), 6),
            "poisoned": train(simulate(4000, scenario="label_noise", seed=2), 6),
        }
    finally:
        registry.close()
    return {"home": root / "home", "versions": versions, "holdout": simulate(3000, seed=99)}


def _champion(registry: Registry, version: int) -> None:
    current = registry.catalog.get_alias(MODEL, "champion")
    registry.catalog.set_alias(
        MODEL, "champion", version, expected=current, reason="t", actor="test"
    )


def test_first_model_is_judged_on_the_floor_alone(trained: dict[str, Any]) -> None:
    reg, v = trained["registry"], trained["versions"]
    events_before = len(reg.catalog.events(MODEL, kinds=["gate.decision"]))
    decision = evaluate_candidate(reg, MODEL, v["clean"], trained["holdout"], RULES, record=False)
    assert decision.champion_version is None and decision.passed
    assert [c.name for c in decision.checks] == ["floor", "latency"]
    strict = RULES.model_copy(update={"floor": 0.99})
    failed = evaluate_candidate(reg, MODEL, v["clean"], trained["holdout"], strict, record=False)
    assert not failed.passed and failed.reasons[0].startswith("floor: roc_auc")
    # record=False is a dry run: no event, no card, and the failed candidate is not rejected
    assert len(reg.catalog.events(MODEL, kinds=["gate.decision"])) == events_before
    assert failed.card_digest is None
    assert reg.catalog.get_model_version(MODEL, v["clean"]).status == "candidate"


def test_a_label_noise_poisoned_candidate_is_rejected(trained: dict[str, Any]) -> None:
    reg, v = trained["registry"], trained["versions"]
    _champion(reg, v["clean"])
    decision = evaluate_candidate(
        reg, MODEL, v["poisoned"], trained["holdout"], RULES, holdout_digest="sha256:" + "9" * 64
    )
    assert decision.verdict == "fail" and decision.champion_version == v["clean"]
    assert decision.ci_high is not None and decision.ci_high < -RULES.max_regression
    assert any(r.startswith("vs_champion") for r in decision.reasons)
    assert any(s.passed is False for s in decision.slices)
    assert reg.catalog.get_model_version(MODEL, v["poisoned"]).status == "rejected"
    assert reg.catalog.get_alias(MODEL, "champion") == v["clean"]  # champion untouched
    event = reg.catalog.events(MODEL, kinds=["gate.decision"])[-1]
    assert event.payload["verdict"] == "fail"
    assert event.payload["holdout_digest"] == "sha256:" + "9" * 64
    assert sorted(event.versions) == sorted([v["poisoned"], v["clean"]])
    card = reg.catalog.latest_artifact("model_card", f"{MODEL}-v{v['poisoned']}")
    assert card is not None and card.digest == decision.card_digest
    text = reg.get_bytes(card.digest).decode()
    assert "**Verdict: FAIL**" in text and "region=" in text
    stored = reg.catalog.latest_artifact("gate_decision", f"{MODEL}-v{v['poisoned']}")
    assert stored is not None
    assert json.loads(reg.get_bytes(stored.digest))["reasons"] == decision.reasons


def test_a_genuinely_better_candidate_passes(trained: dict[str, Any]) -> None:
    reg, v = trained["registry"], trained["versions"]
    _champion(reg, v["weak"])
    decision = evaluate_candidate(reg, MODEL, v["clean"], trained["holdout"], RULES)
    assert decision.passed, decision.reasons
    assert decision.ci_low is not None and decision.ci_low > 0
    assert reg.catalog.get_model_version(MODEL, v["clean"]).status == "candidate"
    metrics = reg.catalog.get_model_version(MODEL, v["clean"]).metrics
    assert metrics["holdout_roc_auc"] == pytest.approx(decision.candidate_metrics["roc_auc"])


def test_the_interval_is_reproducible_with_a_seed(trained: dict[str, Any]) -> None:
    reg, v = trained["registry"], trained["versions"]
    rules = RULES.model_copy(update={"latency_p95_ms": None, "slices": []})

    def interval(seed: int) -> tuple[float | None, float | None]:
        d = evaluate_candidate(
            reg,
            MODEL,
            v["clean"],
            trained["holdout"],
            rules.model_copy(update={"seed": seed}),
            against=v["weak"],
            record=False,
        )
        return d.ci_low, d.ci_high

    assert interval(3) == interval(3)
    assert interval(3) != interval(4)


def test_latency_over_budget_fails(trained: dict[str, Any]) -> None:
    reg, v = trained["registry"], trained["versions"]
    rules = RULES.model_copy(update={"latency_p95_ms": 1e-6})
    decision = evaluate_candidate(
        reg, MODEL, v["clean"], trained["holdout"], rules, against=None, record=False
    )
    assert [r.split(":")[0] for r in decision.reasons] == ["latency"]


def test_rules_are_checked_against_the_task(trained: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="rmse"):
        evaluate_candidate(
            trained["registry"],
            MODEL,
            trained["versions"]["clean"],
            trained["holdout"],
            GateRules(metric="rmse"),
            record=False,
        )
    with pytest.raises(ValueError, match="bootstrap_resamples"):
        GateRules(bootstrap_resamples=100)
