"""``gc`` collects the snapshots a failed retrain stored, once the grace period is over and
nothing else uses them; a snapshot a model version, an artifact or a person's own dataset
row uses is kept."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from registry.errors import BlobNotFoundError, DataValidationError, NotFoundError
from registry.localstore import LocalBlobStore
from registry.store import Registry
from tasks.data.simulator import simulate
from tasks.data.snapshots import take_snapshot
from tasks.pipeline.failures import StageTracker, record_failure

MODEL = "loans"


def _failed_run(registry: Registry, seed: int) -> dict[str, str]:
    """A retrain that stored its three snapshots, then failed validation: their digests."""
    tracker = StageTracker(stage="validate")
    digests: dict[str, str] = {}
    for part, name in (("batch", MODEL), ("training", f"{MODEL}-training"),
                       ("holdout", f"{MODEL}-holdout")):  # fmt: skip
        snap = take_snapshot(registry, name, simulate(40, seed=seed * 10 + len(digests)))
        tracker.snapshots.append({"name": snap.name, "digest": snap.digest, "rows": snap.rows})
        digests[part] = snap.digest
    error = DataValidationError("contract loans: 1 of 30 checks failed on 40 rows", None)
    failure, event_id = record_failure(
        registry, MODEL, tracker, error, run_id="r", trigger="manual", source="x", actor="t"
    )
    assert event_id is not None and failure.stage == "validate"
    return digests


def _age_every_blob(registry: Registry) -> None:
    assert isinstance(registry.blobs, LocalBlobStore)
    for info in registry.blobs.list():
        os.utime(registry.blobs.path_of(info.digest), (1_000_000_000, 1_000_000_000))  # 2001


def test_gc_collects_a_failed_runs_snapshots_only_when_unused_and_old(reg: Registry) -> None:
    registry = reg  # on SQLite and on PostgreSQL
    unused = _failed_run(registry, seed=1)
    used = _failed_run(registry, seed=2)
    # One of the second run's snapshots trained a version, one is a champion's holdout, one
    # a person snapshotted under their own name: all three stay.
    bundle = registry.put_bytes(b"bundle")
    lineage = {"dataset_digest": used["training"]}
    registry.catalog.register_model_version(MODEL, bundle, metrics={}, lineage=lineage)
    registry.catalog.register_artifact("holdout", MODEL, used["holdout"], meta={"version": 1})
    registry.catalog.register_dataset("my-sample", used["batch"], 40, {})

    assert registry.gc(timedelta(hours=1), dry_run=False).collected == []  # all too young
    _age_every_blob(registry)
    dry = registry.gc(timedelta(hours=1))
    assert sorted(dry.failed_run_snapshots) == sorted(unused.values())
    assert registry.get_bytes(unused["batch"])  # a dry run deletes nothing
    done = registry.gc(timedelta(hours=1), dry_run=False)
    assert sorted(b.digest for b in done.collected) == sorted(unused.values())
    for digest in unused.values():
        with pytest.raises(BlobNotFoundError):
            registry.get_bytes(digest)
        with pytest.raises(NotFoundError):
            registry.catalog.get_dataset(digest)
        assert registry.catalog.get_blob(digest) is None
    for digest in used.values():
        assert registry.get_bytes(digest) and registry.catalog.get_dataset(digest)
    # The events still say what the failed runs stored and why they stopped.
    failed = registry.catalog.events(MODEL, kinds=["run.failed"])
    assert [e.payload["dataset_digest"] for e in failed] == [unused["batch"], used["batch"]]
    assert registry.gc(timedelta(hours=1), dry_run=False).collected == []  # nothing left
