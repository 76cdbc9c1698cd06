"""A bounded sample of a data source: its first rows, read without loading all of it.

``pipelines init`` profiles a sample and ``pipelines register`` checks a spec against one; both
only need enough rows to see the columns, their types and their values. Local CSV files are
read line by line up to the bound, Parquet files batch by batch, folders and S3 prefixes file
by file until the bound is reached; a plug-in source (``simulator://``) is read whole and cut.
Rows are parsed exactly as ``load_frame`` parses them, so the sample has the types a run sees.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd

from registry.errors import DataSourceError
from tasks.data.sources import TABLE_SUFFIXES, DatasetSource, load_frame, read_table_bytes

__all__ = ["DEFAULT_SAMPLE_ROWS", "load_sample"]

DEFAULT_SAMPLE_ROWS = 20_000
_PARQUET_MAGIC = b"PAR1"


def load_sample(
    source: str | Path,
    *,
    rows: int = DEFAULT_SAMPLE_ROWS,
    s3_endpoint_url: str | None = None,
    s3_region: str | None = None,
) -> pd.DataFrame:
    """At most ``rows`` rows of ``source`` (its first); a ``DataSourceError`` as ``load_frame``."""
    if rows < 1:
        raise DataSourceError(f"a sample needs at least one row; got {rows}")
    parsed = DatasetSource.parse(source)
    if parsed.kind == "file":
        return _sample_path(Path(parsed.location), rows)
    frame = load_frame(source, s3_endpoint_url=s3_endpoint_url, s3_region=s3_region)
    return frame.head(rows).reset_index(drop=True)


def _sample_path(path: Path, rows: int) -> pd.DataFrame:
    if not path.is_dir():
        if not path.is_file():
            return load_frame(path)  # its one-line error: missing, not a table ...
        return _sample_file(path, rows)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in TABLE_SUFFIXES)
    if not files:
        raise DataSourceError(f"folder {path} has no .parquet or .csv files")
    frames: list[pd.DataFrame] = []
    taken = 0
    for file in files:
        frames.append(_sample_file(file, rows - taken))
        taken += len(frames[-1])
        if taken >= rows:
            break
    if any(list(f.columns) != list(frames[0].columns) for f in frames[1:]):
        raise DataSourceError(f"{path}: files disagree on their columns; keep one layout")
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _sample_file(path: Path, rows: int) -> pd.DataFrame:
    if path.suffix.lower() not in (*TABLE_SUFFIXES, ""):
        raise DataSourceError(f"{path} is not a .parquet or .csv file")
    with path.open("rb") as handle:
        head = handle.read(4)
    if head == _PARQUET_MAGIC or path.suffix.lower() in (".parquet", ".pq"):
        return _sample_parquet(path, rows)
    try:
        return read_table_bytes(_first_lines(path, rows + 1), str(path))
    except DataSourceError:  # a quoted field spanning lines was cut: read it all
        return load_frame(path).head(rows).reset_index(drop=True)


def _first_lines(path: Path, lines: int) -> bytes:
    """The first ``lines`` lines of a text file (a header and ``lines - 1`` rows)."""
    out = io.BytesIO()
    with path.open("rb") as handle:
        for count, line in enumerate(handle):
            if count >= lines:
                break
            out.write(line)
    return out.getvalue()


def _sample_parquet(path: Path, rows: int) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        batches: list[Any] = []
        taken = 0
        for batch in parquet.iter_batches(batch_size=min(rows, 65_536)):
            batches.append(batch)
            taken += batch.num_rows
            if taken >= rows:
                break
        table = pa.Table.from_batches(batches, schema=parquet.schema_arrow)
        return table.slice(0, rows).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataSourceError(f"{path} is not a readable Parquet file: {first}") from exc
