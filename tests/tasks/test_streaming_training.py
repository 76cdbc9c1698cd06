"""Training that streams a snapshot's row groups: the model is as good as the in-memory one,
the same data and seed give the same bundle, a snapshot over the memory budget streams on
its own, and the gate grades a holdout bigger than its limit on a seeded sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from models.bundle import load_bundle
from models.config import ModelConfig, TrainingConfig
from registry.store import Registry
from retrain.testing_serving import register_test_bundle
from tasks.data.simulator import simulate
from tasks.data.snapshots import take_snapshot
from tasks.gate.evaluate import GateRules, evaluate_candidate
from tasks.training.fit import TrainResult, train_model
from tasks.training.plan import TrainingRun, loans_plan

PLAN = loans_plan(
    architecture=ModelConfig(hidden_sizes=(16,)),
    fitting=TrainingConfig(max_epochs=3, batch_size=256, patience=2, accelerator="cpu"),
)


@pytest.fixture(scope="module")
def loans() -> pd.DataFrame:
    return simulate(12_000, seed=1)


def _train(registry: Registry, data: pd.DataFrame | str, tmp_path: Path, **run: Any) -> TrainResult:
    return train_model(
        registry, data, PLAN, TrainingRun(checkpoint_root=tmp_path / "checkpoints", **run)
    )


def test_streamed_training_scores_like_the_in_memory_path(
    registry: Registry, loans: pd.DataFrame, tmp_path: Path
) -> None:
    digest = take_snapshot(registry, "loans", loans).digest
    in_memory = _train(registry, digest, tmp_path)
    streamed = _train(registry, digest, tmp_path, streaming=True)
    assert "data_path" not in in_memory.lineage
    assert streamed.lineage["data_path"] == "streaming"
    assert streamed.lineage["dataset_digest"] == digest
    assert streamed.metrics["val_roc_auc"] == pytest.approx(
        in_memory.metrics["val_roc_auc"], abs=0.03
    )
    assert streamed.metrics["val_roc_auc"] > 0.7
    # The bundle is the usual one: it loads and predicts.
    bundle = load_bundle(registry.get_bytes, streamed.bundle_digest)
    assert bundle.predict(loans.head(5)).shape == (5,)


def test_the_same_data_and_seed_stream_to_the_same_bundle(
    registry: Registry, loans: pd.DataFrame, tmp_path: Path
) -> None:
    digest = take_snapshot(registry, "loans", loans).digest
    first = _train(registry, digest, tmp_path, streaming=True)
    again = _train(registry, digest, tmp_path, streaming=True)
    assert first.bundle_digest == again.bundle_digest
    assert first.version != again.version
    other_seed = train_model(
        registry,
        digest,
        PLAN.with_fitting(seed=1),
        TrainingRun(checkpoint_root=tmp_path / "checkpoints", streaming=True),
    )
    assert other_seed.bundle_digest != first.bundle_digest


def test_a_snapshot_over_the_memory_budget_streams_without_being_asked(
    registry: Registry, loans: pd.DataFrame, tmp_path: Path
) -> None:
    digest = take_snapshot(registry, "loans", loans).digest
    # 12,000 rows of 20 columns are a few MB in memory: over a 1 MB budget, under 4 GB.
    small_budget = _train(registry, digest, tmp_path, memory_budget_mb=1)
    assert small_budget.lineage["data_path"] == "streaming"
    default_budget = _train(registry, digest, tmp_path)
    assert "data_path" not in default_budget.lineage


def test_a_holdout_over_the_limit_is_graded_on_a_seeded_sample(registry: Registry) -> None:
    version = register_test_bundle(registry, "loans", seed=0)
    holdout = take_snapshot(registry, "loans-holdout", simulate(3000, seed=4)).digest
    rules = GateRules(max_holdout_rows=1000, latency_p95_ms=None, explain_rows=0)
    decision = evaluate_candidate(registry, "loans", version, holdout, rules)
    assert decision.holdout_rows == 1000
    assert decision.holdout_sampled_from == 3000
    note = "graded on 1,000 of 3,000 holdout rows (seeded sample)"
    assert note in decision.log_line
    assert decision.card_digest is not None
    assert note.capitalize() in registry.get_bytes(decision.card_digest).decode()
    again = evaluate_candidate(registry, "loans", version, holdout, rules, record=False)
    assert again.candidate_metrics == decision.candidate_metrics  # the same sample
    whole = evaluate_candidate(
        registry, "loans", version, holdout, GateRules(latency_p95_ms=None, explain_rows=0)
    )
    assert whole.holdout_rows == 3000 and whole.holdout_sampled_from is None
    assert json.loads(json.dumps(whole.to_dict()))["holdout_sampled_from"] is None
