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
from typing import TYPE_CHECKING

import pandas as pd

from tasks.data.sources import read_table_bytes

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = [
    "PARQUET_MEDIA_TYPE",
    "ROW_GROUP_ROWS",
    "ZSTD_LEVEL",
    "Snapshot",
    "frame_schema",
    "read_snapshot",
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


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as Parquet bytes with a fixed layout (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        row_group_size=ROW_GROUP_ROWS,
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        use_dictionary=True,
        write_statistics=True,
        version="2.6",
        data_page_version="1.0",
        write_page_index=False,
        store_schema=True,
    )
    return bytes(sink.getvalue().to_pybytes())


def take_snapshot(registry: Registry, name: str, frame: pd.DataFrame) -> Snapshot:
    """Store ``frame`` (blob first, then the dataset row) and return its snapshot record."""
    schema = frame_schema(frame)
    digest = registry.put_bytes(to_parquet_bytes(frame), media_type=PARQUET_MEDIA_TYPE)
    record = registry.catalog.register_dataset(name, digest, len(frame), schema)
    return Snapshot(name=record.name, digest=record.digest, rows=record.rows, schema=schema)


def read_snapshot(registry: Registry, digest: str) -> pd.DataFrame:
    """The frame stored under ``digest`` (bytes re-hashed by the registry on read)."""
    return read_table_bytes(registry.get_bytes(digest), digest)
