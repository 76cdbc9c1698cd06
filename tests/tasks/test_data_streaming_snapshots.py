"""Streamed snapshots and holdout splits store the very bytes the in-memory path stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from registry.errors import ConfigError, DataSourceError
from registry.store import Registry
from tasks.data.holdout import split_holdout
from tasks.data.simulator import simulate
from tasks.data.snapshots import ROW_GROUP_ROWS, read_snapshot, take_snapshot
from tasks.data.sources import load_frame
from tasks.data.streaming import (
    batch_rows_for,
    iter_parquet_batches,
    iter_snapshot,
    snapshot_parquet,
    snapshot_path,
    split_holdout_streaming,
)


@pytest.fixture(scope="module")
def loans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Parquet file of 300k loans (3 snapshot row groups), written in 70k-row groups."""
    path = tmp_path_factory.mktemp("src") / "loans.parquet"
    simulate(300_000, seed=3, scenario="nulls").to_parquet(path, row_group_size=70_000)
    return path


def test_streamed_snapshot_has_the_in_memory_digest(registry: Registry, loans: Path) -> None:
    whole = take_snapshot(registry, "loans", load_frame(loans))
    streamed = snapshot_parquet(registry, "loans", loans, batch_rows=40_000)
    assert streamed == whole
    assert whole.rows > 2 * ROW_GROUP_ROWS


def test_frames_of_any_size_give_the_same_digest(registry: Registry) -> None:
    frame = simulate(150_000, seed=4)
    pieces = [frame.iloc[i : i + 9_999] for i in range(0, len(frame), 9_999)]
    assert snapshot_parquet(registry, "x", pieces) == take_snapshot(registry, "x", frame)


def test_integer_nulls_in_a_late_row_group_type_every_batch(
    registry: Registry, tmp_path: Path
) -> None:
    counts = pa.array([1, 2, 3, 4, None, 6], type=pa.int64())
    flags = pa.array([True, False, True, True, None, False])
    path = tmp_path / "late-nulls.parquet"
    pq.write_table(pa.table({"n": counts, "flag": flags}), path, row_group_size=2)
    batches = list(iter_parquet_batches(path, batch_rows=2))
    assert [str(b["n"].dtype) for b in batches] == ["float64"] * 3
    assert [str(b["flag"].dtype) for b in batches] == ["object"] * 3
    streamed = snapshot_parquet(registry, "late", path, batch_rows=2)
    assert streamed.digest == take_snapshot(registry, "late", load_frame(path)).digest


def test_a_folder_streams_its_files_in_name_order(registry: Registry, tmp_path: Path) -> None:
    frame = simulate(30_000, seed=5)
    folder = tmp_path / "parts"
    folder.mkdir()
    frame.iloc[20_000:].to_parquet(folder / "b.parquet")
    frame.iloc[:20_000].to_parquet(folder / "a.parquet")
    streamed = snapshot_parquet(registry, "parts", folder, batch_rows=7_000)
    assert streamed.digest == take_snapshot(registry, "parts", load_frame(folder)).digest


@pytest.mark.parametrize("time_column", ["event_time", "no_such_column"])
def test_streamed_split_equals_the_in_memory_split(
    registry: Registry, tmp_path: Path, time_column: str
) -> None:
    frame = simulate(120_000, seed=6)
    frame["event_time"] = frame["event_time"].dt.floor("h")  # many tied times
    frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)  # not time-ordered
    path = tmp_path / "shuffled.parquet"
    frame.to_parquet(path, row_group_size=25_000)
    whole = load_frame(path)
    training, holdout = split_holdout(whole, 0.2, time_column=time_column, seed=9)
    split = split_holdout_streaming(
        registry,
        path,
        0.2,
        batch_name="all",
        training_name="t",
        holdout_name="h",
        time_column=time_column,
        seed=9,
        batch_rows=11_000,
    )
    assert split.batch is not None
    assert split.batch.digest == take_snapshot(registry, "all", whole).digest
    assert split.training.digest == take_snapshot(registry, "t", training).digest
    assert split.holdout.digest == take_snapshot(registry, "h", holdout).digest
    assert split.holdout.rows == 24_000


def test_a_small_budget_reads_in_many_batches(registry: Registry, loans: Path) -> None:
    rows = batch_rows_for(1, 20)
    assert 1_024 <= rows <= 1_100
    assert batch_rows_for(1024, 20) > 100 * rows
    digest = snapshot_parquet(registry, "loans", loans, batch_rows=rows).digest
    batches = list(iter_snapshot(registry, digest, batch_rows=rows))
    assert len(batches) >= 300_000 // rows
    assert max(len(b) for b in batches) <= rows
    pd.testing.assert_frame_equal(
        pd.concat(batches, ignore_index=True), read_snapshot(registry, digest)
    )


def test_snapshot_path_is_a_verified_local_file(registry: Registry, loans: Path) -> None:
    digest = snapshot_parquet(registry, "loans", loans).digest
    path = snapshot_path(registry, digest)
    assert pq.ParquetFile(path).metadata.num_rows == 300_000


def test_bad_input_is_one_clear_error(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="does not exist"):
        snapshot_parquet(registry, "x", tmp_path / "missing.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSourceError, match=r"no \.parquet files"):
        snapshot_parquet(registry, "x", tmp_path / "empty")
    with pytest.raises(ConfigError, match="at least 1 MiB"):
        batch_rows_for(0, 10)
    path = tmp_path / "tiny.parquet"
    pd.DataFrame({"event_time": np.arange(3)}).to_parquet(path)
    with pytest.raises(ConfigError, match="too few"):
        split_holdout_streaming(registry, path, 0.1, training_name="t", holdout_name="h")
    assert registry.catalog.latest_dataset("x") is None  # nothing half-written
    assert registry.catalog.latest_dataset("t") is None


def test_copies_of_remote_snapshots_are_verified_and_old_ones_pruned(tmp_path: Path) -> None:
    import os
    import time

    from registry.catalog import Catalog
    from retrain.testing_blobs import InMemoryBlobStore
    from tasks.data.stream_io import SNAPSHOT_CACHE_MAX_AGE_S, snapshot_path

    remote = Registry(InMemoryBlobStore(), Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}"))
    cache = tmp_path / "cache"
    cache.mkdir()
    stale, recent = cache / "stale.parquet", cache / "recent.parquet"
    for old in (stale, recent):
        old.write_bytes(b"an earlier copy")
    long_ago = time.time() - SNAPSHOT_CACHE_MAX_AGE_S - 60
    os.utime(stale, (long_ago, long_ago))
    try:
        snapshot = take_snapshot(remote, "loans", simulate(500, seed=3))
        path = snapshot_path(remote, snapshot.digest, cache_dir=cache)
        assert path.parent == cache and pd.read_parquet(path).shape[0] == 500
        assert not stale.exists() and recent.exists()  # unused for a day: removed
        assert snapshot_path(remote, snapshot.digest, cache_dir=cache) == path  # reused
    finally:
        remote.close()
