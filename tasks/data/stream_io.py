"""Parquet in batches: read row batches, write deterministic snapshots chunk by chunk.

Memory is bounded by the batch size, never by the table. Two rules keep a streamed table
byte-identical to the in-memory path (``take_snapshot`` of the whole frame):

- batches get the pandas dtypes the whole file would get: an integer column with nulls in any
  row group (or file) is float64 in every batch, a boolean one with nulls is object;
- the snapshot writer (``tasks.data.stream_snapshot``) re-buffers batches into row groups of
  exactly ``ROW_GROUP_ROWS`` rows, each written with the layout knobs of ``to_parquet_bytes``.

Dictionary (categorical) columns are identical when every row group carries the same
dictionary, which is what pandas categoricals write; files whose row groups carry different
dictionaries still snapshot deterministically, but not necessarily to the in-memory digest.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from registry.errors import ConfigError, DataSourceError

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = [
    "BATCH_ROWS",
    "MIN_BATCH_ROWS",
    "batch_rows_for",
    "iter_parquet_batches",
    "iter_snapshot",
    "parquet_columns",
    "parquet_files",
    "parquet_rows",
    "reservoir_sample",
    "rows_at",
    "snapshot_path",
]

BATCH_ROWS = 131_072
"""Rows per batch when no memory budget says otherwise."""
MIN_BATCH_ROWS = 1_024
MAX_BATCH_ROWS = 4_194_304
# A cell is 8 bytes in pandas; a batch lives as Arrow, as pandas, and as the temporaries a
# validation builds over it: about 45 bytes a cell at the peak (measured with bench/data.py
# on the loans table), so six copies.
_BYTES_PER_CELL = 8
_COPIES = 6
_verified: set[tuple[str, int, int]] = set()


def batch_rows_for(memory_mb: int, columns: int) -> int:
    """Rows per batch so that a batch of ``columns`` columns and its working copies fit in
    ``memory_mb`` MiB (clamped to 1,024 .. 4,194,304 rows)."""
    if memory_mb < 1:
        raise ConfigError(f"memory budget must be at least 1 MiB, got {memory_mb}")
    rows = (memory_mb << 20) // (max(columns, 1) * _BYTES_PER_CELL * _COPIES)
    return int(min(max(rows, MIN_BATCH_ROWS), MAX_BATCH_ROWS))


def parquet_files(path: Path) -> list[Path]:
    """``path`` itself, or the Parquet files of a folder in name order."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".parquet", ".pq"))
        if not files:
            raise DataSourceError(f"folder {path} has no .parquet files to stream")
        return files
    if not path.is_file():
        raise DataSourceError(f"{path} does not exist; give a Parquet file or a folder of them")
    return [path]


def parquet_columns(path: Path) -> list[str]:
    """Column names of a Parquet file or folder (its first file's), from the footer alone."""
    return list(_open(parquet_files(path)[0]).schema_arrow.names)


def parquet_rows(path: Path) -> int:
    """Rows in a Parquet file or folder, from the footers alone."""
    return sum(_open(f).metadata.num_rows for f in parquet_files(path))


def iter_parquet_batches(
    path: Path,
    *,
    columns: Sequence[str] | None = None,
    batch_rows: int = BATCH_ROWS,
    row_groups: Sequence[int] | None = None,
) -> Iterator[pd.DataFrame]:
    """Frames of at most ``batch_rows`` rows of a Parquet file or folder (files in name
    order), typed as the whole table would be (see the module docstring); ``row_groups``
    reads only those row groups of a single file."""
    if batch_rows < 1:
        raise ConfigError(f"batch_rows must be positive, got {batch_rows}")
    files = parquet_files(path)
    if row_groups is not None and len(files) > 1:
        raise ConfigError("row_groups selects row groups of one Parquet file, not a folder")
    handles = [_open(f) for f in files]
    names = handles[0].schema_arrow.names
    for f, handle in zip(files[1:], handles[1:], strict=True):
        if handle.schema_arrow.names != names:
            raise DataSourceError(f"{f}: its columns differ from {files[0]}; keep one layout")
    wanted = list(columns) if columns is not None else None
    if wanted is not None and (absent := [c for c in wanted if c not in names]):
        raise DataSourceError(f"{path}: no column(s) {absent}")
    fixes = _whole_table_dtypes(handles, wanted or names)
    for f, handle in zip(files, handles, strict=True):
        try:
            for batch in handle.iter_batches(
                batch_size=batch_rows, columns=wanted, row_groups=row_groups
            ):
                frame = batch.to_pandas()
                for column, dtype in fixes.items():
                    if str(frame[column].dtype) != dtype:
                        frame[column] = frame[column].astype(dtype)
                yield frame
        except OSError as exc:
            raise DataSourceError(f"{f} is not a readable Parquet file: {exc}") from exc


def _open(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataSourceError(f"{path} is not a readable Parquet file: {exc}") from exc


def _whole_table_dtypes(handles: list[Any], columns: Sequence[str]) -> dict[str, str]:
    """Columns whose per-batch pandas dtype may differ from the whole table's: integers with
    nulls somewhere (float64 as a whole), integers in one file and floats in another, and
    booleans with nulls (object)."""
    import pyarrow as pa

    fixes: dict[str, str] = {}
    for column in columns:
        types = [h.schema_arrow.field(column).type for h in handles]
        if not all(pa.types.is_integer(t) or pa.types.is_boolean(t) for t in types):
            if any(pa.types.is_integer(t) for t in types) and all(
                pa.types.is_integer(t) or pa.types.is_floating(t) for t in types
            ):
                fixes[column] = "float64"
            continue
        if any(_has_nulls(h, column) for h in handles):
            fixes[column] = "object" if pa.types.is_boolean(types[0]) else "float64"
    return fixes


def _has_nulls(handle: Any, column: str) -> bool:
    meta = handle.metadata
    index = handle.schema_arrow.get_field_index(column)
    for group in range(meta.num_row_groups):
        stats = meta.row_group(group).column(index).statistics
        if stats is None or not stats.has_null_count:  # no footer count: read the column
            return bool(handle.read(columns=[column]).column(0).null_count)
        if stats.null_count:
            return True
    return False


def snapshot_path(registry: Registry, digest: str, *, cache_dir: Path | None = None) -> Path:
    """A local file holding the snapshot's verified bytes: the local store's own blob file
    (re-hashed once per process), else a copy fetched into ``cache_dir``."""
    from registry.localstore import LocalBlobStore

    blobs = registry.blobs
    if isinstance(blobs, LocalBlobStore):
        path = blobs.path_of(digest)
        if not path.is_file():
            registry.get_bytes(digest)  # raises the store's not-found error
        st = path.stat()
        key = (digest, st.st_size, st.st_mtime_ns)
        if key not in _verified:
            blobs.check(digest)
            _verified.add(key)
        return path
    folder = cache_dir or Path(tempfile.gettempdir()) / "retrain-snapshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest.removeprefix('sha256:')}.parquet"
    if path.is_file():
        os.utime(path)  # in use: the pruning below goes by last use
    else:
        registry.get_to_file(digest, path)  # verified before it gets its name
        _prune(folder, keep=path)
    return path


SNAPSHOT_CACHE_MAX_AGE_S = 24 * 3600
"""Copies of remote snapshots not used for this long are removed when another is fetched."""


def _prune(folder: Path, *, keep: Path) -> None:
    cutoff = time.time() - SNAPSHOT_CACHE_MAX_AGE_S
    for old in folder.glob("*.parquet"):
        with contextlib.suppress(OSError):  # another process may be removing it too
            if old != keep and old.stat().st_mtime < cutoff:
                old.unlink()


def iter_snapshot(
    registry: Registry,
    digest: str,
    *,
    columns: Sequence[str] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[pd.DataFrame]:
    """The snapshot under ``digest`` in frames of at most ``batch_rows`` rows."""
    return iter_parquet_batches(
        snapshot_path(registry, digest), columns=columns, batch_rows=batch_rows
    )


def rows_at(batches: Iterable[pd.DataFrame], positions: np.ndarray) -> pd.DataFrame:
    """The rows at sorted ``positions`` (0-based over all batches), in one frame."""
    picked: list[pd.DataFrame] = []
    offset, first = 0, None
    for frame in batches:
        first = frame if first is None else first
        lo, hi = np.searchsorted(positions, [offset, offset + len(frame)])
        if hi > lo:
            picked.append(frame.iloc[positions[lo:hi] - offset])
        offset += len(frame)
    if not picked:
        return first.iloc[:0] if first is not None else pd.DataFrame()
    return pd.concat(picked, ignore_index=True)


def reservoir_sample(batches: Iterable[pd.DataFrame], rows: int, seed: int) -> pd.DataFrame:
    """A seeded uniform sample of ``rows`` rows without replacement, in one pass, in stream
    order. Each row gets a uniform key from one seeded stream and the ``rows`` smallest keys
    win, so the sample depends on the seed and the rows, not on how they were batched.
    Memory: the sample plus one batch."""
    if rows < 1:
        raise ConfigError(f"a sample needs at least one row, got {rows}")
    rng = np.random.default_rng(seed)
    kept: pd.DataFrame | None = None
    keys = np.empty(0)
    order = np.empty(0, dtype=np.int64)
    offset = 0
    for frame in batches:
        draw = rng.random(len(frame))
        limit = np.inf if len(keys) < rows else keys.max()
        take = np.flatnonzero(draw < limit)
        joined_keys = np.concatenate([keys, draw[take]])
        joined_order = np.concatenate([order, take + offset])
        joined = frame.iloc[take] if kept is None else pd.concat([kept, frame.iloc[take]])
        if len(joined_keys) > rows:
            best = np.argpartition(joined_keys, rows - 1)[:rows]
            joined_keys, joined_order, joined = (
                joined_keys[best],
                joined_order[best],
                joined.iloc[best],
            )
        kept, keys, order = joined, joined_keys, joined_order
        offset += len(frame)
    if kept is None:
        return pd.DataFrame()
    return kept.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
