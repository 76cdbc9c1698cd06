"""Behavioural checks in the gate, as the shipped loan-default spec declares them: a normally
trained model passes; one trained where a higher credit score means more defaults, or where the
loan's purpose decides default, is rejected with the numbers; a spec naming an unknown feature
is refused in one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from registry.errors import ConfigError
from registry.store import Registry
from retrain.config.settings import Settings
from retrain.config.specs import PipelineSpec, canonical_json, load_spec, parse_spec
from retrain.config.wiring import build_registry
from tasks.data.simulator import TARGET, simulate
from tasks.gate.evaluate import GateRules, evaluate_candidate
from tasks.training.fit import train_model
from tasks.training.plan import TrainingRun

SPEC_PATH = Path(__file__).resolve().parents[2] / "retrain" / "pipelines" / "loan-default.yaml"


@pytest.fixture(scope="module")
def spec() -> PipelineSpec:
    return load_spec(SPEC_PATH)


def _credit_flipped(frame: pd.DataFrame) -> pd.DataFrame:
    """The same applicants, credit scores mirrored: a higher score now means more defaults."""
    flipped = frame.copy()
    flipped["credit_score"] = (2 * 680 - frame["credit_score"]).clip(300, 850)
    return flipped


def _purpose_decides(frame: pd.DataFrame) -> pd.DataFrame:
    """Every education or medical loan defaults: the purpose now matters a great deal."""
    changed = frame.copy()
    changed.loc[changed["purpose"].isin(["education", "medical"]), TARGET] = 1
    return changed


@pytest.fixture(scope="module")
def trained(
    spec: PipelineSpec, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The shipped spec's model trained on normal, credit-flipped and purpose-led loans."""
    root = tmp_path_factory.mktemp("behaviour")
    registry = build_registry(Settings(home=root / "home"))
    plan = spec.plan.training.with_fitting(max_epochs=6)
    run = TrainingRun(checkpoint_root=root / "checkpoints")
    frame = simulate(8000, seed=1)
    versions = {
        name: train_model(registry, data, plan, run).version
        for name, data in (
            ("normal", frame),
            ("flipped", _credit_flipped(frame)),
            ("purpose", _purpose_decides(frame)),
        )
    }
    try:
        yield {"registry": registry, "versions": versions, "model": plan.model}
    finally:
        registry.close()


def _judge(trained: dict[str, Any], spec: PipelineSpec, which: str) -> Any:
    """The shipped behaviour block alone (no floor, latency or champion) on a fresh holdout."""
    rules = GateRules(latency_p95_ms=None, behaviour=spec.gate.behaviour)
    registry: Registry = trained["registry"]
    version = trained["versions"][which]
    holdout = simulate(4000, seed=99)
    return evaluate_candidate(registry, trained["model"], version, holdout, rules, against=None)


def test_the_shipped_behaviour_block_passes_a_normally_trained_model(
    trained: dict[str, Any], spec: PipelineSpec
) -> None:
    decision = _judge(trained, spec, "normal")
    names = [c.name for c in decision.checks]
    assert names == [
        "invariance purpose",
        "invariance home_ownership",
        "invariance open_accounts",
        "direction credit_score",
        "direction delinquencies_2y",
    ]
    assert decision.passed, decision.reasons
    direction = next(c for c in decision.checks if c.name == "direction credit_score")
    assert "lowered or kept P(default) on all 2000 rows" in direction.detail


def test_a_model_that_learned_the_wrong_sign_is_rejected_with_its_numbers(
    trained: dict[str, Any], spec: PipelineSpec
) -> None:
    decision = _judge(trained, spec, "flipped")
    assert not decision.passed
    (reason,) = [r for r in decision.reasons if r.startswith("direction credit_score")]
    assert "raising it by 1 std" in reason and "raised P(default) on" in reason
    share = float(reason.split(" on ")[1].split("%")[0])
    assert share > 50.0  # most applicants, not a rounding error
    status = trained["registry"].catalog.get_model_version(
        trained["model"], trained["versions"]["flipped"]
    )
    assert status.status == "rejected"


def test_a_model_led_by_an_irrelevant_feature_fails_invariance(
    trained: dict[str, Any], spec: PipelineSpec
) -> None:
    decision = _judge(trained, spec, "purpose")
    failed = {c.name: c.detail for c in decision.checks if not c.passed}
    assert "invariance purpose" in failed, decision.reasons
    average = float(failed["invariance purpose"].split(" by ")[1].split(" ")[0])
    assert average >= 0.04


def test_the_checks_are_reproducible_and_recorded_with_the_rules(
    trained: dict[str, Any], spec: PipelineSpec
) -> None:
    first, second = _judge(trained, spec, "normal"), _judge(trained, spec, "normal")
    assert first.checks == second.checks
    behaviour = json.loads(json.dumps(first.rules))["behaviour"]
    assert behaviour["direction"][0] == {
        "feature": "credit_score",
        "sign": "decreasing",
        "tolerance": 0.0,
        "max_share": 0.01,
    }


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (
            "invariance: [{feature: regoin}]",
            "gate.behaviour.invariance[0].feature: 'regoin' is not one of features.numeric",
        ),
        (
            "direction: [{feature: credit_score, sign: decreasing}, {feature: x, sign: up}]",
            "gate.behaviour.direction[1].sign: Input should be 'increasing' or 'decreasing'",
        ),
        (
            "direction: [{feature: region, sign: decreasing}]",
            "gate.behaviour.direction[0].feature: 'region' is a categorical feature",
        ),
        (
            "direction: [{feature: credit_scor, sign: decreasing}]",
            "gate.behaviour.direction[0].feature: 'credit_scor' is not a feature",
        ),
    ],
)
def test_a_spec_naming_what_is_not_a_feature_is_refused_in_one_line(
    block: str, expected: str
) -> None:
    text = SPEC_PATH.read_text()
    start = text.index("  behaviour:")
    end = text.index("\n\n", start)
    broken = text[:start] + f"  behaviour:\n    {block}" + text[end:]
    with pytest.raises(ConfigError) as caught:
        parse_spec(broken, source="loan-default.yaml", base_dir=SPEC_PATH.parent)
    message = str(caught.value)
    assert expected in message and "\n" not in message


def test_a_spec_without_behaviour_keeps_its_digest(spec: PipelineSpec) -> None:
    text = SPEC_PATH.read_text()
    start = text.index("  behaviour:")
    end = text.index("\n\n", start)
    plain = parse_spec(text[:start] + text[end:], base_dir=SPEC_PATH.parent)
    assert plain.gate.behaviour is None
    assert b"behaviour" not in canonical_json(plain)
    assert b'"behaviour"' in canonical_json(spec)
    assert np.isfinite(spec.gate.behaviour.sample_rows)  # type: ignore[union-attr]
