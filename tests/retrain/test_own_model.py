"""A data scientist's own model, by spec alone: a CSV in a folder of their own, `pipelines
init` for a spec and a contract, `pipelines register`, then retrains as a worker runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from registry.store import Registry
from retrain.config.settings import Settings
from retrain.config.spec_store import get_registered_spec
from retrain.config.wiring import build_registry
from retrain.testing import NullTracker, ScriptedMetricsSource
from retrain.testing_cli import run_cli as retrain
from tasks.pipeline.recipe import RetrainEnv, RetrainRequest, run_retrain
from tasks.training.plan import TrainingRun


def write_customers(path: Path, rows: int, *, seed: int, flip_labels: bool = False) -> None:
    """Customers with an id, an integer segment code, a city (text), two numbers and whether
    they churned (0/1), which the numbers, the segment and the city predict well."""
    rng = np.random.default_rng(seed)
    tenure = rng.normal(0.0, 1.0, rows)
    spend = rng.uniform(0.0, 100.0, rows).round(2)
    segment = rng.integers(1, 5, rows)
    city = rng.choice(["lille", "lyon", "nice", "paris"], rows)
    logit = 2.0 * tenure + 0.04 * (spend - 50.0) + 1.5 * (segment == 2) - 1.0 * (city == "lyon")
    churned = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(10_000 + seed * rows, 10_000 + (seed + 1) * rows),
            "segment": segment,
            "city": city,
            "tenure": tenure.round(4),
            "spend": spend,
            "churned": 1 - churned if flip_labels else churned,
        }
    )
    frame.to_csv(path, index=False)


@pytest.fixture
def own_folder(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of the user's own (outside the project), the working folder of every command."""
    folder = tmp_path / "my-project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_init_register_retrain_twice_then_a_poisoned_batch_is_rejected(
    own_folder: Path, home: Path
) -> None:
    write_customers(own_folder / "customers.csv", 2500, seed=1)

    code, output = retrain(
        "pipelines", "init", "customers.csv", "--target", "churned", "-o", "churn.yaml"
    )
    assert code == 0, output
    spec_text = (own_folder / "churn.yaml").read_text()
    raw = yaml.safe_load(spec_text)
    assert raw["name"] == "churn" and raw["task"] == "binary"
    assert raw["dataset"]["contract"] == "churn.expectations.json"  # next to the spec
    assert raw["features"] == {"numeric": ["tenure", "spend"], "categorical": ["segment", "city"]}
    assert "customer_id: an identifier" in spec_text  # left out, with the reason
    suite = json.loads((own_folder / "churn.expectations.json").read_text())
    kinds = {e["type"] for e in suite["expectations"]}
    assert {"expect_column_values_to_be_in_set", "expect_column_values_to_be_between"} <= kinds

    code, output = retrain("pipelines", "register", "churn.yaml", "--no-deploy")
    assert code == 0, output
    assert "registered pipeline churn" in output
    with build_registry(Settings(home=home)) as registry:
        contract = registry.catalog.latest_artifact("contract", "churn")
        assert contract is not None
        stored = get_registered_spec(registry, "churn")
        assert stored.dataset.contract_digest == contract.digest
        # A worker elsewhere has neither file: the run reads the suite from the registry.
        (own_folder / "churn.expectations.json").unlink()
        (own_folder / "churn.yaml").unlink()
        _retrain_as_a_worker(registry, own_folder, contract.digest)

    code, listing = retrain("pipelines", "ls")
    assert code == 0 and "churn" in listing and "active" in listing


def _retrain_as_a_worker(registry: Registry, folder: Path, contract_digest: str) -> None:
    spec = get_registered_spec(registry, "churn")
    env = RetrainEnv(
        metrics=ScriptedMetricsSource([]),
        run=TrainingRun(tracker=NullTracker(), checkpoint_root=folder / "checkpoints"),
    )
    request = RetrainRequest(spec.dataset.source, trigger="manual")
    first = run_retrain(registry, spec.plan, request, env)
    assert (first.gate, first.outcome, first.champion) == ("pass", "promoted", 1)
    validation = registry.catalog.latest_artifact("validation", "churn")
    assert validation is not None and validation.meta["success"] is True
    assert validation.meta["contract_digest"] == contract_digest
    lineage = registry.catalog.get_model_version("churn", 1).lineage
    assert lineage["contract_digest"] == contract_digest

    again = run_retrain(registry, spec.plan, request, env)
    assert (again.outcome, again.candidate_version) == ("reused", 1)
    assert [v.version for v in registry.catalog.list_model_versions("churn")] == [1]

    write_customers(folder / "poisoned.csv", 2500, seed=2, flip_labels=True)
    poisoned = run_retrain(registry, spec.plan, RetrainRequest(str(folder / "poisoned.csv")), env)
    # Flipped labels are still 0/1: the contract passes them; the gate, on v1's holdout, does not.
    assert poisoned.candidate_version == 2 and poisoned.gate == "fail"
    assert registry.catalog.get_alias("churn", "champion") == 1
    assert registry.catalog.get_model_version("churn", 2).status == "rejected"


def test_init_infers_a_regression_and_refuses_a_text_target(own_folder: Path) -> None:
    rng = np.random.default_rng(3)
    rows = 600
    size = rng.uniform(20, 200, rows).round(1)
    pd.DataFrame(
        {
            "size_m2": size,
            "rooms": rng.integers(1, 6, rows),
            "district": rng.choice(["north", "south"], rows),
            "price": (size * 3000 + rng.normal(0, 5000, rows)).round(0),
            "sold": rng.choice(["yes", "no"], rows),
        }
    ).to_csv(own_folder / "homes.csv", index=False)

    code, output = retrain("pipelines", "init", "homes.csv", "--target", "price")
    assert code == 0, output
    raw = yaml.safe_load((own_folder / "homes.yaml").read_text())
    assert (raw["name"], raw["task"], raw["gate"]["metric"]) == ("homes", "regression", "rmse")
    assert raw["features"]["categorical"] == ["rooms", "district", "sold"]
    suite = json.loads((own_folder / "homes.expectations.json").read_text())
    [price_range] = [
        e["kwargs"]
        for e in suite["expectations"]
        if e["type"] == "expect_column_values_to_be_between" and e["kwargs"]["column"] == "price"
    ]
    assert price_range["min_value"] < 20 * 3000 and price_range["max_value"] > 200 * 3000

    code, output = retrain("pipelines", "init", "homes.csv", "--target", "price")
    assert code == 2 and "homes.yaml exists; pass --force" in output
    code, output = retrain("pipelines", "init", "homes.csv", "--target", "sold", "--name", "sold")
    assert code == 2
    assert output.strip().startswith("error: --target 'sold' holds text ('no', 'yes'); recode it")
    assert not (own_folder / "sold.yaml").exists()
