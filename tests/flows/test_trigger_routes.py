"""Every route into a retrain takes the same decision: the monitor's drift signal and the
retrain flow itself respect the cooldown of the last retrain, on the pipeline's own clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from registry.store import Registry
from retrain.config.settings import Settings
from retrain.config.spec_store import register_spec
from retrain.config.specs import default_spec_paths, load_spec
from retrain.config.wiring import build_registry
from tasks.data.simulator import simulate

MODEL = "loan-default"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def pipeline(tmp_path: Path, prefect_harness: None) -> Iterator[tuple[Settings, Registry, str]]:
    """loan-default on 3,000 rows, two epochs, a one-hour cooldown; and a drifted batch."""
    settings = Settings(home=tmp_path / "home", serve_port=9)
    registry = build_registry(settings)
    data = tmp_path / "data"
    data.mkdir()
    simulate(3000, seed=1).to_parquet(data / "stable.parquet", index=False)
    drifted = data / "shifted.parquet"
    simulate(3000, scenario="covariate_shift", seed=2).to_parquet(drifted, index=False)
    spec = load_spec(next(p for p in default_spec_paths() if p.stem == MODEL))
    spec = spec.model_copy(
        update={
            "dataset": spec.dataset.model_copy(update={"source": str(data / "stable.parquet")}),
            "training": spec.training.model_copy(update={"max_epochs": 2}),
            "triggers": spec.triggers.model_copy(update={"cooldown_minutes": 60}),
            # This is about triggers, not quality: a two-epoch model only has to exist.
            "gate": spec.gate.model_copy(update={"floor": 0.5, "behaviour": None}),
        }
    )
    register_spec(registry, spec)
    try:
        yield settings, registry, str(drifted)
    finally:
        registry.close()


def test_drift_inside_the_cooldown_neither_signals_nor_retrains(
    pipeline: tuple[Settings, Registry, str],
) -> None:
    from flows.monitor_drift import monitor_drift
    from flows.retrain_model import retrain_model

    settings, registry, drifted = pipeline
    first = retrain_model(pipeline=MODEL, trigger="bootstrap", as_of=T0, settings=settings)
    assert first.champion == first.candidate_version == 1

    inside = monitor_drift(
        pipeline=MODEL, source=drifted, as_of=T0 + timedelta(minutes=10), settings=settings
    )
    assert inside.drifted
    assert inside.event_id is None
    assert "cooldown 60 min" in inside.retrain

    skipped = retrain_model(
        pipeline=MODEL, trigger="drift", as_of=T0 + timedelta(minutes=20), settings=settings
    )
    assert skipped.outcome == "skipped"
    assert skipped.candidate_version is None
    assert [v.version for v in registry.catalog.list_model_versions(MODEL)] == [1]

    after = monitor_drift(
        pipeline=MODEL, source=drifted, as_of=T0 + timedelta(hours=2), settings=settings
    )
    assert after.drifted
    assert after.retrain == "requested"
    assert after.event_id is not None

    signals = registry.catalog.events(MODEL, kinds=["drift.detected"])
    assert [e.payload["retrain_requested"] for e in signals] == [False, True]
    kinds = [
        e.kind for e in registry.catalog.events(MODEL, kinds=["retrain.started", "retrain.skipped"])
    ]
    assert kinds == ["retrain.started", "retrain.skipped"]


def test_a_retrain_by_hand_runs_inside_the_cooldown(
    pipeline: tuple[Settings, Registry, str],
) -> None:
    from flows.retrain_model import retrain_model

    settings, _registry, drifted = pipeline
    retrain_model(pipeline=MODEL, trigger="bootstrap", as_of=T0, settings=settings)
    by_hand = retrain_model(
        pipeline=MODEL,
        source=drifted,
        as_of=T0 + timedelta(minutes=5),
        settings=settings,
    )
    assert by_hand.outcome != "skipped"
    assert by_hand.trigger == "manual"  # no trigger given, not created by the scheduler
    assert by_hand.candidate_version == 2
