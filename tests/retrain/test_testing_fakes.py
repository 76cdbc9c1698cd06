"""The shipped fakes (``retrain.testing``) behave like what they stand in for."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest

from registry.catalog import Catalog
from registry.errors import (
    BlobNotFoundError,
    CorruptBlobError,
    MetricsUnavailableError,
    StoreUnavailableError,
)
from registry.store import Registry
from retrain.testing import (
    MANUAL_EPOCH,
    ManualClock,
    NullTracker,
    Reading,
    ScriptedMetricsSource,
    ScriptExhaustedError,
    canary_script,
    window_counters,
)
from retrain.testing_blobs import InMemoryBlobStore
from serving.stats import StatsBook
from tasks.release.metric_sources import MetricsSnapshot


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock()
    assert clock.time() == MANUAL_EPOCH and clock.monotonic() == 1000.0
    assert clock.time() == MANUAL_EPOCH  # reading it does not move it
    clock.sleep(1.5)
    clock.advance(0.5)
    assert clock.time() == MANUAL_EPOCH + 2.0 and clock.monotonic() == 1002.0
    assert clock.sleeps == [1.5, 0.5]
    assert clock.now().isoformat() == "2026-01-01T00:00:02+00:00"
    with pytest.raises(ValueError, match="non-negative"):
        clock.sleep(-1)


def test_window_counters_are_what_the_server_records() -> None:
    book = StatsBook()
    series = book.series("loans", 3, "canary")
    for i in range(40):
        if i < 4:
            series.fail(0.01)
        else:
            series.observe(0.01 * (1 + (i % 10) / 20), [0.2 + (i % 7) / 100])
    for _ in range(6):
        series.feedback([0.2], [1.0])
    recorded = MetricsSnapshot.from_server_stats(book.snapshot("loans")).get(3)
    counters = window_counters(40, latency_s=0.01, prediction=0.2, errors=4)
    labelled = window_counters(
        40, latency_s=0.01, prediction=0.2, errors=4, labels=6, label_value=1
    )
    assert counters == window_counters(40, latency_s=0.01, prediction=0.2, errors=4)
    assert labelled == recorded
    assert (counters.requests, counters.errors, counters.feedback_count) == (40, 4, 0)


def test_scripted_source_plays_cumulative_counters_back() -> None:
    clock = ManualClock()
    window = window_counters(100)
    routing = {"champion": 1, "canary": 2, "weight": 50.0, "shadow": False}
    source = ScriptedMetricsSource(
        [
            Reading(),
            {1: window, 2: window},
            MetricsUnavailableError("stats unreadable"),
            Reading(traffic={2: window}, routing=routing, load_errors={3: "bad digest"}),
        ],
        clock=clock.monotonic,
        model="loans",
    )
    first = source.snapshot("loans")
    clock.advance(30)
    second = source.snapshot("loans")
    assert (first.taken_at, second.taken_at) == (1000.0, 1030.0)
    assert second.since(first, 1) == window and second.since(first, 2) == window
    with pytest.raises(MetricsUnavailableError):
        source.snapshot("loans")
    third = source.snapshot("loans")
    assert third.get(1) == window and third.get(2) == window + window  # cumulative
    assert third.since(second, 2) == window and third.since(second, 1).requests == 0
    assert third.routing == routing and third.load_errors == {3: "bad digest"}
    assert first.routing is None and source.remaining == 0 and source.calls == 4
    assert source.read_at == [1000.0, 1030.0, 1030.0, 1030.0]
    with pytest.raises(ScriptExhaustedError, match="snapshot #5"):
        source.snapshot("loans")
    with pytest.raises(AssertionError, match="scripted for model 'loans'"):
        ScriptedMetricsSource([Reading()], model="loans").snapshot("churn")


def test_canary_script_lays_out_a_release() -> None:
    a, b, w = {1: window_counters(1)}, {2: window_counters(2)}, {2: window_counters(3)}
    assert canary_script([a, b], watch=[w]) == [Reading(), Reading(), a, Reading(), b, Reading(), w]
    assert canary_script([a]) == [Reading(), Reading(), a]


@pytest.fixture
def memory_registry(tmp_path: Path) -> Registry:
    return Registry(InMemoryBlobStore(), Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}"))


def test_in_memory_blob_store_backs_a_registry(memory_registry: Registry, tmp_path: Path) -> None:
    registry = memory_registry
    store = registry.blobs
    assert isinstance(store, InMemoryBlobStore) and store.url == "memory://blobs"
    digest = registry.put_bytes(b"weights")
    assert registry.put_bytes(b"weights") == digest  # content-addressed: stored once
    assert registry.get_bytes(digest) == b"weights"
    source = tmp_path / "manifest.json"
    source.write_bytes(b"{}")
    assert registry.get_bytes(registry.put_file(source)) == b"{}"
    streamed = registry.put_stream(io.BytesIO(b"streamed"))
    registry.get_to_file(streamed, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == b"streamed"
    info = store.stat(digest)
    assert info is not None and info.size == len(b"weights")
    assert [i.digest for i in store.list()] == sorted([digest, registry.put_bytes(b"{}"), streamed])
    with pytest.raises(BlobNotFoundError):
        registry.get_bytes("sha256:" + "0" * 64)
    registry.close()


def test_in_memory_blob_store_refuses_rot_and_quarantines_it(memory_registry: Registry) -> None:
    registry = memory_registry
    store = registry.blobs
    assert isinstance(store, InMemoryBlobStore)
    digest = registry.put_bytes(b"model bytes")
    store.corrupt(digest)
    with pytest.raises(CorruptBlobError):
        registry.get_bytes(digest)
    report = registry.verify(quarantine=True)
    assert [(p.digest, p.problem) for p in report.problems] == [(digest, "corrupt")]
    assert store.quarantined == (digest,) and not store.exists(digest)
    registry.put_bytes(b"model bytes")  # the original bytes again restore it
    assert registry.get_bytes(digest) == b"model bytes" and registry.verify().ok
    registry.close()


def test_in_memory_blob_store_collects_orphans_and_can_be_unreachable(
    memory_registry: Registry,
) -> None:
    registry = memory_registry
    store = registry.blobs
    assert isinstance(store, InMemoryBlobStore)
    kept = registry.put_bytes(b"catalogued")
    orphan = store.put_bytes(b"never catalogued").digest
    report = registry.gc(timedelta(0), dry_run=False)
    assert [b.digest for b in report.collected] == [orphan]
    assert store.exists(kept) and not store.exists(orphan)
    store.available = False
    with pytest.raises(StoreUnavailableError):
        registry.get_bytes(kept)
    store.available = True
    assert registry.get_bytes(kept) == b"catalogued"
    registry.close()


def test_null_tracker_keeps_what_training_tells_it() -> None:
    tracker = NullTracker()
    assert tracker.run_id is None
    tracker.start("loans-train", {"max_epochs": 3}, {"model": "loans"})
    tracker.log_metrics({"val_loss": 0.4}, step=1)
    tracker.set_tags({"bundle_digest": "sha256:abc"})
    tracker.log_text("{}", "bundle_manifest.json")
    tracker.finish()
    assert tracker.run_id == "null-run-1" and tracker.run_name == "loans-train"
    assert tracker.params == {"max_epochs": 3}
    assert tracker.tags == {"model": "loans", "bundle_digest": "sha256:abc"}
    assert tracker.metrics == [(1, {"val_loss": 0.4})]
    assert tracker.texts == {"bundle_manifest.json": "{}"} and tracker.status == "FINISHED"
    tracker.start("again", {}, {})
    assert tracker.run_id == "null-run-2" and tracker.metrics == [] and tracker.status is None
