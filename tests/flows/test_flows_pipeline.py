"""The flows under a real (temporary) Prefect API: what a user sees after each run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from registry.errors import DataValidationError, RunFailedError
from registry.store import Registry
from retrain.config.settings import Settings
from retrain.config.spec_store import register_spec
from retrain.config.specs import default_spec_paths, load_spec
from retrain.config.wiring import build_registry
from tasks.data.simulator import simulate

MODEL = "loan-default"
# The simulated clock of the trigger decisions: a Monday at 03:00, the scheduled retrain time.
MONDAY = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)


def _write(path: Path, scenario: str, rows: int, seed: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    simulate(rows, scenario=scenario, seed=seed).to_parquet(path, index=False)
    return str(path)


@dataclass(frozen=True)
class Pipeline:
    """The registered pipeline, its registry, a folder for data, and the flows' settings."""

    registry: Registry
    data: Path
    settings: Settings


@pytest.fixture
def pipeline(tmp_path: Path, prefect_harness: None) -> Iterator[Pipeline]:
    """The default loan pipeline, registered on small data, with flows pointed at tmp_path."""
    # Nothing listens on port 9: canaries get no stats from the model server.
    settings = Settings(home=tmp_path / "home", serve_port=9)
    registry = build_registry(settings)
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
        yield Pipeline(registry, tmp_path / "data", settings)
    finally:
        registry.close()


def run_log() -> list[str]:
    """The newest 200 flow and task run log lines the Prefect API holds (what its UI shows),
    oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import LogSort
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)  # the run logger ships lines in the background
    with get_client(sync_client=True) as client:
        logs = client.read_logs(limit=200, sort=LogSort.TIMESTAMP_DESC)
    return [log.message for log in reversed(logs)]


def test_first_run_crowns_a_champion_and_a_rerun_reuses_it(pipeline: Pipeline) -> None:
    from flows.retrain_model import retrain_model

    registry, settings = pipeline.registry, pipeline.settings
    first = retrain_model(pipeline=MODEL, trigger="bootstrap", as_of=MONDAY, settings=settings)
    assert first.gate == "pass", first.gate_reasons
    assert first.release == "promoted"
    assert registry.catalog.get_alias(MODEL, "champion") == first.candidate_version == 1

    again = retrain_model(pipeline=MODEL, as_of=MONDAY, settings=settings)
    assert again.reused is True and again.candidate_version == 1
    assert again.outcome == "reused" and again.release == "promoted"
    assert [v.version for v in registry.catalog.list_model_versions(MODEL)] == [1]

    forced = retrain_model(pipeline=MODEL, force=True, as_of=MONDAY, settings=settings)
    assert forced.candidate_version == 2
    # No model server answers, so no canary can run: v2 is not released (still a candidate,
    # not rejected) and v1 serves on.
    assert (forced.outcome, forced.release) == ("not_released", "not_released")
    assert forced.release_reason.startswith("no model server answers at http://127.0.0.1:9 ")
    assert registry.catalog.get_model_version(MODEL, 2).status == "candidate"
    assert registry.catalog.get_alias(MODEL, "champion") == 1
    assert registry.catalog.get_alias(MODEL, "canary") is None
    # The run's log (what the Prefect UI shows) says what was decided, and why.
    logged = run_log()
    assert any(m.startswith(f"gate PASS for {MODEL} v2: roc_auc candidate ") for m in logged)
    assert f"release of {MODEL} v2: not released: {forced.release_reason}" in logged


def test_broken_data_stops_the_run_before_training(pipeline: Pipeline) -> None:
    from flows.retrain_model import retrain_model

    registry = pipeline.registry
    broken = _write(pipeline.data / "broken.parquet", "schema_break", 2000, seed=3)
    with pytest.raises(RunFailedError, match=f"^retrain of {MODEL} failed at validate: ") as exc:
        retrain_model(pipeline=MODEL, source=broken, settings=pipeline.settings)
    assert isinstance(exc.value.__cause__, DataValidationError)
    assert registry.catalog.list_model_versions(MODEL) == []
    assert registry.catalog.latest_artifact("validation", MODEL) is not None


def test_monitor_flags_drift_and_emits_an_event(pipeline: Pipeline) -> None:
    from flows.monitor_drift import monitor_drift
    from flows.retrain_model import retrain_model

    registry, data, settings = pipeline.registry, pipeline.data, pipeline.settings
    week = MONDAY + timedelta(days=7)
    nothing = monitor_drift(pipeline=MODEL, as_of=MONDAY, settings=settings)
    assert nothing.retrain == "no champion" and nothing.champion is None
    retrain_model(pipeline=MODEL, trigger="bootstrap", as_of=MONDAY, settings=settings)

    calm_source = _write(data / "calm.parquet", "stable", 3000, 5)
    calm = monitor_drift(pipeline=MODEL, source=calm_source, as_of=week, settings=settings)
    assert calm.drifted is False and calm.event_id is None and calm.champion == 1

    shifted = _write(data / "shifted.parquet", "covariate_shift", 3000, seed=6)
    drifted = monitor_drift(pipeline=MODEL, source=shifted, as_of=week, settings=settings)
    assert drifted.drifted is True and drifted.event_id is not None
    assert drifted.retrain == "requested"
    assert "annual_income" in drifted.columns
    recorded = registry.catalog.events(MODEL, kinds=["drift.detected"])
    assert len(recorded) == 1 and recorded[0].payload["drifted_share"] >= 0.3
    report = registry.catalog.latest_artifact("drift_report", f"{MODEL}-monitor")
    assert report is not None and recorded[0].payload["report_digest"] == report.digest


def test_rollback_flow_moves_the_champion_back(pipeline: Pipeline) -> None:
    from flows.rollback_model import rollback_model
    from retrain.testing_serving import register_test_bundle

    registry = pipeline.registry
    first = register_test_bundle(registry, MODEL, seed=1, champion=True)
    second = register_test_bundle(registry, MODEL, seed=2, champion=True)
    result = rollback_model(
        model=MODEL, reason="bad predictions reported", settings=pipeline.settings
    )
    assert (result.from_version, result.to_version) == (second, first)
    assert registry.catalog.get_alias(MODEL, "champion") == first
