"""The gate grades a candidate on data it never saw: the champion's holdout, however the
champion became champion (the flow's canary, ``retrain canary``, ``retrain rollback``).

A label-noise batch graded on its own holdout vouches for the model trained on it; graded on
the champion's holdout, the same candidate fails.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from models.config import ModelConfig, TrainingConfig
from registry.champions import HOLDOUT_KIND, frozen_holdout
from registry.errors import ConfigError
from registry.store import Registry
from retrain.testing import ManualClock, ScriptedMetricsSource, canary_script, window_counters
from retrain.testing_serving import register_test_bundle
from tasks.data.simulator import FEATURES_CATEGORICAL, FEATURES_NUMERIC, TARGET, simulate
from tasks.gate.evaluate import GateRules, evaluate_candidate
from tasks.pipeline.plan import PipelinePlan
from tasks.pipeline.steps import gate_candidate, grading_holdout, prepare_data, train_candidate
from tasks.release.canary import run_canary
from tasks.release.policy import CanaryPolicy
from tasks.release.rollback import rollback
from tasks.training.plan import TrainingPlan, TrainingRun

MODEL = "loan-default"
PLAN = PipelinePlan(
    TrainingPlan(
        model=MODEL,
        target=TARGET,
        task="binary",
        numeric=FEATURES_NUMERIC,
        categorical=FEATURES_CATEGORICAL,
        architecture=ModelConfig(hidden_sizes=(32,)),
        fitting=TrainingConfig(max_epochs=6, batch_size=256, patience=2),
    ),
    holdout_fraction=0.3,
    gate=GateRules(floor=0.6, max_regression=0.01, latency_p95_ms=None),
    spec_digest="sha256:" + "5" * 64,
)
POLICY = CanaryPolicy(steps=[50, 100], interval_s=1.0, min_requests=10, watch_windows=0)


def _candidate(registry: Registry, frame: pd.DataFrame, tmp_path: Path) -> tuple[int, str]:
    """Train ``frame`` as the retrain does; (version, the batch's own fresh holdout)."""
    prepared = prepare_data(registry, PLAN, frame)
    run = TrainingRun(checkpoint_root=tmp_path / "checkpoints")
    result = train_candidate(registry, PLAN, prepared, run)
    return result.version, prepared.holdout.digest


def _release(registry: Registry, version: int) -> None:
    """``retrain canary`` outside the flow, on healthy scripted windows."""
    clock = ManualClock()
    champion = registry.catalog.get_alias(MODEL, "champion")
    both = {champion: window_counters(100), version: window_counters(100)} if champion else {}
    script = canary_script([both, {version: window_counters(200)}])
    source = ScriptedMetricsSource(script, clock=clock.monotonic, model=MODEL)
    outcome = run_canary(
        registry, MODEL, version, POLICY, source, sleep=clock.sleep, clock=clock.monotonic
    )
    assert outcome.promoted, outcome.reason


def test_a_poisoned_batch_is_graded_on_the_champions_holdout_and_fails(
    registry: Registry, tmp_path: Path
) -> None:
    v1, holdout1 = _candidate(registry, simulate(2000, seed=1), tmp_path)
    _release(registry, v1)  # the first model: promoted outright
    assert frozen_holdout(registry.catalog, MODEL) == holdout1
    v2, holdout2 = _candidate(registry, simulate(2000, seed=3), tmp_path)
    _release(registry, v2)
    assert frozen_holdout(registry.catalog, MODEL) == holdout2  # moved with the champion
    rollback(registry, MODEL, reason="complaints")
    assert registry.catalog.get_alias(MODEL, "champion") == v1
    assert frozen_holdout(registry.catalog, MODEL) == holdout1  # and moved back with it
    routes = [a.meta["by"] for a in registry.catalog.artifacts(HOLDOUT_KIND, MODEL)]
    assert routes == ["canary", "canary", "rollback"]

    poisoned, own = _candidate(registry, simulate(2000, scenario="label_noise", seed=2), tmp_path)
    assert grading_holdout(registry, MODEL, own) == holdout1 != own
    vouched = evaluate_candidate(registry, MODEL, poisoned, own, PLAN.gate, record=False)
    decision = gate_candidate(registry, PLAN, poisoned, grading_holdout(registry, MODEL, own))
    assert vouched.passed, "graded by its own batch, the poisoned model would pass"
    assert decision.verdict == "fail" and decision.champion_version == v1
    assert any(reason.startswith("vs_champion") for reason in decision.reasons)
    assert decision.holdout_digest == holdout1
    assert registry.catalog.get_alias(MODEL, "champion") == v1


def test_a_first_model_is_graded_on_its_own_holdout(registry: Registry) -> None:
    assert grading_holdout(registry, MODEL, "sha256:" + "1" * 64) == "sha256:" + "1" * 64


def test_a_champion_without_a_holdout_is_one_clear_error(registry: Registry) -> None:
    register_test_bundle(registry, MODEL, champion=True)  # not trained by a pipeline
    with pytest.raises(ConfigError, match="champion v1 has no recorded holdout"):
        grading_holdout(registry, MODEL, "sha256:" + "1" * 64)
