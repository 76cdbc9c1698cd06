"""Retention over simulated weeks (the catalog's clock, no sleeping): snapshots past a
pipeline's ``privacy.retention_days`` go, unless a live version's lineage needs them, and
those kept are named with the versions that keep them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from registry.store import Registry
from retrain.config.spec_store import register_spec
from retrain.config.specs import DEFAULT_SPECS_DIR, parse_spec
from retrain.retention import apply_retention, registered_retention
from tasks.data.simulator import simulate
from tasks.data.snapshots import take_snapshot

MODEL = "loan-default"


def test_snapshots_past_retention_go_unless_a_live_version_needs_them(registry: Registry) -> None:
    now = [datetime(2026, 1, 5, tzinfo=UTC)]
    registry.catalog.clock = lambda: now[0]
    raw = yaml.safe_load((DEFAULT_SPECS_DIR / "loan-default.yaml").read_text())
    raw["privacy"] = {"retention_days": 30}
    register_spec(registry, parse_spec(yaml.safe_dump(raw)))
    assert registered_retention(registry) == {MODEL: 30}

    batch = take_snapshot(registry, MODEL, simulate(50, seed=1))
    training = take_snapshot(registry, f"{MODEL}-training", simulate(40, seed=2))
    other = take_snapshot(registry, "someone-elses-data", simulate(30, seed=3))
    bundle = registry.put_bytes(b"a bundle stand-in")
    registry.catalog.register_model_version(
        MODEL, bundle, metrics={}, lineage={"dataset_digest": training.digest}, reason="test"
    )
    now[0] += timedelta(weeks=3)
    recent = take_snapshot(registry, MODEL, simulate(50, seed=4))

    now[0] += timedelta(weeks=3)  # six weeks after the first snapshots, three after the last
    dry = apply_retention(registry, registered_retention(registry))
    assert [r.digest for r in dry.expired] == [batch.digest]
    assert dry.lines() == [
        "retention: would collect 1 snapshot(s) and 0 report(s) past retention",
        "retention: kept 1 snapshot(s) and 0 report(s) past retention: needed by loan-default v1",
    ]
    assert registry.blobs.exists(batch.digest)  # a dry run deletes nothing

    done = apply_retention(registry, registered_retention(registry), dry_run=False)
    assert done.blobs_deleted == [batch.digest]
    assert not registry.blobs.exists(batch.digest)
    assert registry.catalog.get_blob(batch.digest) is None
    latest = registry.catalog.latest_dataset(MODEL)
    assert latest is not None and latest.digest == recent.digest
    assert registry.catalog.get_blob(other.digest) is not None  # no retention of its own

    registry.catalog.set_status(MODEL, 1, "retired", reason="test", actor="test")
    now[0] += timedelta(weeks=1)
    after = apply_retention(registry, {MODEL: 30}, dry_run=False)
    assert [r.digest for r in after.expired] == [training.digest] and after.kept == {}
    assert not registry.blobs.exists(training.digest)
    assert registry.blobs.exists(recent.digest) and registry.blobs.exists(bundle)


def test_registry_gc_says_what_retention_collects_and_keeps(registry: Registry, home: Path) -> None:
    from retrain.testing_cli import run_cli

    weeks_ago = datetime.now(UTC) - timedelta(weeks=6)
    registry.catalog.clock = lambda: weeks_ago
    raw = yaml.safe_load((DEFAULT_SPECS_DIR / "loan-default.yaml").read_text())
    raw["privacy"] = {"retention_days": 30}
    register_spec(registry, parse_spec(yaml.safe_dump(raw)))
    old = take_snapshot(registry, MODEL, simulate(50, seed=1))
    needed = take_snapshot(registry, f"{MODEL}-training", simulate(40, seed=2))
    bundle = registry.put_bytes(b"a bundle stand-in")
    registry.catalog.register_model_version(
        MODEL, bundle, metrics={}, lineage={"dataset_digest": needed.digest}, reason="test"
    )

    code, dry = run_cli("registry", "gc")
    assert code == 0, dry
    assert "retention: would collect 1 snapshot(s) and 0 report(s) past retention" in dry
    assert "kept 1 snapshot(s) and 0 report(s) past retention: needed by loan-default v1" in dry
    assert registry.blobs.exists(old.digest)
    code, done = run_cli("registry", "gc", "--delete")
    assert code == 0, done
    assert "retention: collected 1 snapshot(s)" in done
    assert not registry.blobs.exists(old.digest) and registry.blobs.exists(needed.digest)
