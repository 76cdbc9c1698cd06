"""End to end: the demo's story, on small data, checked against the registry's record."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrain.config.settings import Settings
from retrain.config.wiring import build_registry

MODEL = "loan-default"


@pytest.mark.timeout(900)
def test_the_closed_loop_story(tmp_path: Path, prefect_harness: None) -> None:
    from retrain.local.demo import run_demo

    rows = run_demo(Settings(home=tmp_path), rows=10_000, epochs=6)
    decisions = [str(r["decision"]) for r in rows]
    what = [str(r["what happened"]) for r in rows]

    assert decisions[0].startswith("gate pass, promoted")  # v1 bootstrapped as champion
    assert "no drift" in decisions[1]  # a quiet week raises nothing
    assert "ml.drift.detected" in decisions[2]  # the drifted week is flagged
    assert what[3].startswith("alert x25 → 1 retrain (25× 202)")  # a storm starts one run
    assert decisions[3].startswith("gate pass, canary promoted")  # v2 promoted via the canary
    assert decisions[4].startswith("gate fail")  # the poisoned batch stops at the gate
    assert decisions[5].startswith("gate pass, canary aborted")  # the faulty canary is undone

    registry = build_registry(Settings(home=tmp_path / "demo"))
    try:
        catalog = registry.catalog
        assert catalog.get_alias(MODEL, "champion") == 2
        assert catalog.get_alias(MODEL, "canary") is None
        statuses = {v.version: v.status for v in catalog.list_model_versions(MODEL)}
        assert statuses[3] == "rejected"
        assert statuses[4] != "champion"
        assert len(catalog.events(MODEL, kinds=["canary.promoted"])) == 2  # v1 direct, v2 canary
        assert len(catalog.events(MODEL, kinds=["canary.aborted"])) == 1
    finally:
        registry.close()
