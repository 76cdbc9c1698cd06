"""Deterministic snapshot Parquet written chunk by chunk, hashed while it is written.

``SnapshotWriter`` re-buffers frames of any size into row groups of exactly
``ROW_GROUP_ROWS`` rows and writes each as one contiguous table with the layout knobs of
``tasks.data.snapshots.to_parquet_bytes``, so the file's bytes (and digest) equal those of
``take_snapshot`` of the same rows as one frame. The column types are the first batch's,
widened across the batches buffered before the first row group (a column that is all null at
first takes the type of its first values).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from registry.errors import DataSourceError
from tasks.data.snapshots import (
    PARQUET_MEDIA_TYPE,
    PARQUET_WRITE_OPTIONS,
    ROW_GROUP_ROWS,
    Snapshot,
    arrow_table,
    frame_schema,
    register_snapshot,
)
from tasks.data.stream_io import BATCH_ROWS, iter_parquet_batches

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["SnapshotWriter", "snapshot_parquet", "spool"]


class SnapshotWriter:
    """Frames in, one deterministic snapshot Parquet file out (hashed while written)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows = 0
        self.schema: dict[str, str] | None = None
        self._hash = hashlib.sha256()
        self._file: Any = None
        self._writer: Any = None
        self._arrow_schema: Any = None
        self._pending: list[Any] = []
        self._pending_rows = 0

    def add(self, frame: pd.DataFrame) -> None:
        if self.schema is None:
            self.schema = frame_schema(frame)
        table = arrow_table(frame)
        if self._arrow_schema is not None and table.schema != self._arrow_schema:
            table = self._cast(table)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        while self._pending_rows >= ROW_GROUP_ROWS:
            self._write_group(ROW_GROUP_ROWS)

    def close(self) -> str:
        """Write the last row group; the file's digest (``sha256:<hex>``)."""
        if self.schema is None:
            raise DataSourceError("the table has no batches at all; nothing to snapshot")
        if self._pending_rows or self._writer is None:
            self._write_group(self._pending_rows)
        self._writer.close()
        self._file.close()
        return f"sha256:{self._hash.hexdigest()}"

    def store(self, registry: Registry, name: str) -> Snapshot:
        """Close the file and store it as the snapshot ``name`` (blob first, then the
        dataset row)."""
        digest = self.close()
        assert self.schema is not None
        stored = registry.catalog.get_blob(digest) is not None and registry.blobs.exists(digest)
        if not stored and registry.put_file(self.path, media_type=PARQUET_MEDIA_TYPE) != digest:
            raise DataSourceError(f"{self.path} changed while it was stored; snapshot it again")
        return register_snapshot(registry, name, digest, self.rows, self.schema)

    def _write_group(self, rows: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            schemas = [t.schema for t in self._pending]
            self._arrow_schema = pa.unify_schemas(schemas, promote_options="permissive")
            self._pending = [self._cast(t) for t in self._pending]
            self._file = pa.PythonFile(_HashingFile(self.path, self._hash), mode="w")
            self._writer = pq.ParquetWriter(self._file, self._arrow_schema, **PARQUET_WRITE_OPTIONS)
        table = pa.concat_tables(self._pending)
        group, rest = table.slice(0, rows), table.slice(rows)
        self._writer.write_table(group.combine_chunks(), row_group_size=ROW_GROUP_ROWS)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def _cast(self, table: Any) -> Any:
        import pyarrow as pa

        try:
            return table.select(self._arrow_schema.names).cast(self._arrow_schema)
        except (pa.ArrowException, KeyError) as exc:
            raise DataSourceError(
                f"a batch's columns or types differ from the first batch's: {exc}"
            ) from exc


class _HashingFile:
    """A binary file that hashes what is written to it."""

    def __init__(self, path: Path, hasher: Any) -> None:
        self._handle = path.open("wb")
        self._hash = hasher
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._hash.update(view)
        return self._handle.write(view)

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        if not self.closed:
            self._handle.close()
            self.closed = True

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False


def snapshot_parquet(
    registry: Registry,
    name: str,
    source: Path | Iterable[pd.DataFrame],
    *,
    transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    batch_rows: int = BATCH_ROWS,
    spool_dir: Path | None = None,
) -> Snapshot:
    """Snapshot a Parquet file/folder or an iterable of frames, one batch in memory at a time;
    the digest equals ``take_snapshot`` of the same rows as one frame. ``transform`` maps each
    batch (it must be row-wise: the same rows in, the same rows out, whatever the batching)."""
    batches: Iterable[pd.DataFrame] = (
        iter_parquet_batches(Path(source), batch_rows=batch_rows)
        if isinstance(source, str | os.PathLike)
        else source
    )
    with spool(spool_dir) as folder:
        writer = SnapshotWriter(folder / "snapshot.parquet")
        for frame in batches:
            writer.add(transform(frame) if transform is not None else frame)
        return writer.store(registry, name)


class spool:
    """A temporary folder for snapshot files, removed on exit."""

    def __init__(self, where: Path | None) -> None:
        self._temp = tempfile.TemporaryDirectory(prefix="retrain-snapshot-", dir=where)

    def __enter__(self) -> Path:
        return Path(self._temp.name)

    def __exit__(self, *exc: object) -> None:
        self._temp.cleanup()
