"""The flows under a real (temporary) Prefect API: what a user sees after each run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.errors import DataValidationError
from registry.store import Registry
from retrain.config.settings import Settings
from retrain.config.spec_store import register_spec
from retrain.config.specs import default_spec_paths, load_spec
from retrain.config.wiring import build_registry
from tasks.data.simulator import simulate

MODEL = "loan-default"


def _write(path: Path, scenario: str, rows: int, seed: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    simulate(rows, scenario=scenario, seed=seed).to_parquet(path, index=False)
    return str(path)


@pytest.fixture
def pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None
) -> Iterator[tuple[Registry, Path]]:
    """The default loan pipeline, registered on small data, with flows pointed at tmp_path."""
    home = tmp_path / "home"
    monkeypatch.setenv("RETRAIN_HOME", str(home))
    monkeypatch.setenv("RETRAIN_SERVE_PORT", "9")  # nothing listens: canaries get no stats
    registry = build_registry(Settings(home=home))
    spec = load_spec(next(p for p in default_spec_paths() if p.stem == MODEL))
    source = _write(tmp_path / "data" / "week-1.parquet", "stable", 5000, seed=1)
    spec = spec.model_copy(
        update={
            "dataset": spec.dataset.model_copy(update={"source": source}),
            "training": spec.training.model_copy(update={"max_epochs": 5}),
            "canary": spec.canary.model_copy(
                update={"interval_s": 0.2, "inconclusive_limit": 0, "settle_timeout_s": 0.5}
            ),
        }
    )
    register_spec(registry, spec)
    try:
        yield registry, tmp_path / "data"
    finally:
        registry.close()


def test_first_run_crowns_a_champion_and_a_rerun_reuses_it(
    pipeline: tuple[Registry, Path],
) -> None:
    from flows.retrain_model import retrain_model

    registry, _ = pipeline
    first = retrain_model(pipeline=MODEL, trigger="bootstrap")
    assert first["gate"] == "pass", first["gate_reasons"]
    assert first["release"] == "promoted"
    assert registry.catalog.get_alias(MODEL, "champion") == first["candidate_version"] == 1

    again = retrain_model(pipeline=MODEL)
    assert again["reused"] is True and again["candidate_version"] == 1
    assert [v.version for v in registry.catalog.list_model_versions(MODEL)] == [1]

    forced = retrain_model(pipeline=MODEL, force=True)
    assert forced["candidate_version"] == 2
    # No model server answers, so the canary cannot be judged: it is aborted, v1 serves on.
    assert forced["release"] == "aborted"
    assert registry.catalog.get_alias(MODEL, "champion") == 1
    assert registry.catalog.get_alias(MODEL, "canary") is None


def test_broken_data_stops_the_run_before_training(pipeline: tuple[Registry, Path]) -> None:
    from flows.retrain_model import retrain_model

    registry, data = pipeline
    broken = _write(data / "broken.parquet", "schema_break", 2000, seed=3)
    with pytest.raises(DataValidationError):
        retrain_model(pipeline=MODEL, source=broken)
    assert registry.catalog.list_model_versions(MODEL) == []
    assert registry.catalog.latest_artifact("validation", MODEL) is not None


def test_monitor_flags_drift_and_emits_an_event(pipeline: tuple[Registry, Path]) -> None:
    from flows.monitor_drift import monitor_drift
    from flows.retrain_model import retrain_model

    registry, data = pipeline
    assert monitor_drift(pipeline=MODEL)["reason"] == "no champion"
    retrain_model(pipeline=MODEL, trigger="bootstrap")

    calm = monitor_drift(pipeline=MODEL, source=_write(data / "calm.parquet", "stable", 3000, 5))
    assert calm["drifted"] is False and calm["event_id"] is None

    shifted = _write(data / "shifted.parquet", "covariate_shift", 3000, seed=6)
    drifted = monitor_drift(pipeline=MODEL, source=shifted)
    assert drifted["drifted"] is True and drifted["event_id"] is not None
    assert "annual_income" in drifted["columns"]
    recorded = registry.catalog.events(MODEL, kinds=["drift.detected"])
    assert len(recorded) == 1 and recorded[0].payload["drifted_share"] >= 0.3
    report = registry.catalog.latest_artifact("drift_report", f"{MODEL}-monitor")
    assert report is not None and recorded[0].payload["report_digest"] == report.digest


def test_rollback_flow_moves_the_champion_back(pipeline: tuple[Registry, Path]) -> None:
    from flows.rollback_model import rollback_model
    from retrain.testing import register_test_bundle

    registry, _ = pipeline
    first = register_test_bundle(registry, MODEL, seed=1, champion=True)
    second = register_test_bundle(registry, MODEL, seed=2, champion=True)
    row = rollback_model(model=MODEL, reason="bad predictions reported")
    assert (row["from_version"], row["to_version"]) == (second, first)
    assert registry.catalog.get_alias(MODEL, "champion") == first
