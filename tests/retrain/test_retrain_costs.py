"""What a retrain cost, stage by stage, is on its version (lineage), its MLflow run, its model
card and ``retrain models show``; a spec's ``budget:`` stops training in time and fails a
candidate that costs too much to serve."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.errors import ConfigError
from registry.store import Registry
from retrain.config.spec_store import get_registered_spec, register_spec
from retrain.config.specs import DEFAULT_SPECS_DIR, parse_spec
from retrain.testing import NullTracker, ScriptedMetricsSource
from retrain.testing_cli import run_cli as retrain
from tasks.pipeline.cycle import retrain_when_due
from tasks.pipeline.recipe import RetrainEnv, RetrainRequest
from tasks.pipeline.resources import STAGES, RunCosts
from tasks.pipeline.runs import RetrainSummary
from tasks.training.plan import TrainingRun

MODEL = "loan-default"


def _spec(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load((DEFAULT_SPECS_DIR / "loan-default.yaml").read_text())
    raw["model"] = {"hidden_sizes": [16]}
    raw["training"].update(max_epochs=2, batch_size=256)
    raw["gate"].update(floor=0.3, latency_p95_ms=None, slices=[], max_regression=1.0)
    raw["gate"].pop("behaviour", None)  # a 2-epoch model is not judged on its behaviour here
    raw["release"] = "gate"
    raw.update(changes)
    return raw


def _retrain(
    registry: Registry, tmp_path: Path, raw: dict[str, Any], seed: int, tracker: NullTracker
) -> RetrainSummary:
    source = f"simulator://loans?scenario=stable&rows=1500&seed={seed}"
    raw["dataset"]["source"] = source
    register_spec(registry, parse_spec(yaml.safe_dump(raw)))
    env = RetrainEnv(
        metrics=ScriptedMetricsSource([]),
        run=TrainingRun(tracker=tracker, checkpoint_root=tmp_path / "checkpoints"),
    )
    return retrain_when_due(
        registry,
        get_registered_spec(registry, MODEL),
        RetrainRequest(source),
        env,
        now=datetime.now(UTC),
        run_id=f"run-{seed}",
        say=lambda _: None,
    )


def test_each_stage_cost_is_recorded_and_shown(
    registry: Registry, home: Path, tmp_path: Path
) -> None:
    tracker = NullTracker()
    first = _retrain(registry, tmp_path, _spec(), 1, tracker)
    assert first.outcome == "promoted", first.gate_reasons
    assert _retrain(registry, tmp_path, _spec(), 2, tracker).outcome == "promoted"  # drift too
    lineage = registry.catalog.get_model_version(MODEL, 2).lineage
    costs = lineage["cost"]
    assert list(costs) == list(STAGES)
    assert costs["train"]["cpu_s"] > 0 and costs["train"]["peak_rss_mb"] > 100
    assert all(c["gpu_s"] == 0 and c["gpu_peak_mb"] is None for c in costs.values())  # CPU
    print("\n" + RunCosts.from_dict(costs).markdown())

    logged = {k for _, metrics in tracker.metrics for k in metrics}
    assert {f"cost.{s}.cpu_s" for s in STAGES} <= logged
    assert {"cost.train.wall_s", "cost.canary.peak_rss_mb"} <= logged

    code, shown = retrain("models", "show", f"{MODEL}:2")
    assert code == 0, shown
    table = shown[shown.index("Cost") :].splitlines()
    assert "stage" in table[2] and "CPU s" in table[2] and "peak RSS MB" in table[2]
    for stage in (*STAGES, "total"):
        assert any(line.strip("│ ").startswith(stage + " ") for line in table), stage
    code, as_json = retrain("models", "show", f"{MODEL}:2", "--json")
    assert code == 0 and json.loads(as_json)["cost"]["stages"] == costs

    card = registry.catalog.latest_artifact("model_card", f"{MODEL}-v2")
    assert card is not None
    text = registry.get_bytes(card.digest).decode()
    cost = text[text.index("## Cost") :]
    assert "| stage | wall s | CPU s | peak RSS MB | GPU s | GPU peak MB |" in cost
    for stage in ("validate", "drift", "train", "gate"):
        assert f"| {stage} |" in cost, stage
    assert "- canary: measured after this card; see `retrain models show`" in cost


def test_a_budget_stops_training_and_fails_an_expensive_candidate(
    registry: Registry, home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = _spec(
        budget={
            "max_training_minutes": 1e-6,  # crossed by the first epoch
            "max_predict_p95_ms": 1e-4,
            "max_cpu_ms_per_1k_predictions": 1e-3,
        }
    )
    raw["training"]["max_epochs"] = 5
    with caplog.at_level(logging.INFO, logger="tasks.pipeline.recipe"):
        summary = _retrain(registry, tmp_path, raw, 1, NullTracker())
    record = registry.catalog.get_model_version(MODEL, 1)
    stopped = record.lineage["training_budget"]["stopped"]
    assert stopped.startswith("training stopped at its budget: 6e-05 s after epoch 1 of 5 (")
    assert [r.getMessage() for r in caplog.records].count(stopped) == 1

    assert summary.outcome == "rejected_at_gate"
    p95, cpu = summary.gate_reasons
    assert p95.startswith("serving budget: p95 ") and p95.endswith(" ms > 0.0001")
    assert cpu.startswith("serving budget: cpu ") and cpu.endswith(" ms per 1k predictions > 0.001")
    code, shown = retrain("models", "show", f"{MODEL}:1")
    assert code == 0 and stopped in shown and "FAILED: p95 " in shown


def test_a_budget_that_limits_nothing_leaves_the_spec_digest_alone() -> None:
    plain = parse_spec(yaml.safe_dump(_spec()))
    empty = parse_spec(yaml.safe_dump(_spec(budget={})))
    limited = parse_spec(yaml.safe_dump(_spec(budget={"max_gpu_seconds": 60})))
    assert plain.digest == empty.digest != limited.digest
    assert limited.plan.budget.training_limits() is not None


@pytest.mark.parametrize(
    ("budget", "said"),
    [
        ({"max_training_minutes": 0}, "budget.max_training_minutes: Input should be greater"),
        ({"max_cpu_ms": 4}, "budget.max_cpu_ms: unknown field"),
    ],
)
def test_a_wrong_budget_is_one_line(budget: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_spec(yaml.safe_dump(_spec(budget=budget)))
    assert said in str(caught.value) and "\n" not in str(caught.value)
