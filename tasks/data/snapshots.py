"""Dataset snapshots: a frame frozen as deterministic Parquet, stored once under its sha256.

The same rows always give the same bytes, so the same digest, so "same inputs => no work"
holds for every step downstream. What makes the bytes deterministic:

- the frame's index is dropped and pandas' own schema metadata (which embeds the pandas
  version and index layout) is removed; column types live in the Arrow schema Parquet stores;
- fixed layout knobs: row groups of ``ROW_GROUP_ROWS`` rows, zstd level ``ZSTD_LEVEL``,
  dictionary encoding on, statistics on, no page index, format 2.6, data page v1;
- Parquet has no write timestamp; the only writer-dependent field is ``created_by`` (the
  pyarrow version), so digests are stable for a given pyarrow release.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from tasks.data.sources import read_table_bytes

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = [
    "PARQUET_MEDIA_TYPE",
    "PARQUET_WRITE_OPTIONS",
    "ROW_GROUP_ROWS",
    "ZSTD_LEVEL",
    "Snapshot",
    "arrow_table",
    "frame_schema",
    "read_snapshot",
    "register_snapshot",
    "take_snapshot",
    "to_parquet_bytes",
]

PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
ROW_GROUP_ROWS = 131_072
ZSTD_LEVEL = 3


@dataclass(frozen=True)
class Snapshot:
    """A stored dataset: its name, content digest, row count and column types."""

    name: str
    digest: str
    rows: int
    schema: dict[str, str] = field(default_factory=dict)


def frame_schema(frame: pd.DataFrame) -> dict[str, str]:
    """Column name -> pandas dtype name, in column order."""
    return {str(c): str(t) for c, t in frame.dtypes.items()}


PARQUET_WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": ZSTD_LEVEL,
    "use_dictionary": True,
    "write_statistics": True,
    "version": "2.6",
    "data_page_version": "1.0",
    "write_page_index": False,
    "store_schema": True,
}
"""The layout knobs of every snapshot file (with row groups of ``ROW_GROUP_ROWS`` rows)."""


def arrow_table(frame: pd.DataFrame) -> Any:
    """``frame`` as an Arrow table without its index or pandas' own schema metadata."""
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as Parquet bytes with a fixed layout (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(arrow_table(frame), sink, row_group_size=ROW_GROUP_ROWS, **PARQUET_WRITE_OPTIONS)
    return bytes(sink.getvalue().to_pybytes())


def take_snapshot(registry: Registry, name: str, frame: pd.DataFrame) -> Snapshot:
    """Store ``frame`` (blob first, then the dataset row) and return its snapshot record."""
    digest = registry.put_bytes(to_parquet_bytes(frame), media_type=PARQUET_MEDIA_TYPE)
    return register_snapshot(registry, name, digest, len(frame), frame_schema(frame))


def register_snapshot(
    registry: Registry, name: str, digest: str, rows: int, schema: dict[str, str]
) -> Snapshot:
    """The dataset row of a stored snapshot blob, as a snapshot record."""
    record = registry.catalog.register_dataset(name, digest, rows, schema)
    return Snapshot(name=record.name, digest=record.digest, rows=record.rows, schema=schema)


def read_snapshot(registry: Registry, digest: str) -> pd.DataFrame:
    """The frame stored under ``digest`` (bytes re-hashed by the registry on read)."""
    return read_table_bytes(registry.get_bytes(digest), digest)
