"""Where datasets come from: local files and folders, S3 prefixes and plug-in schemes.

Sources are written as one string, the way a spec or a user names them:

- ``data/train.parquet``, ``data/train.csv`` or a folder of such files (read in name order)
- ``s3://bucket/prefix``: every ``.parquet``/``.csv`` object under the prefix, in key order;
  the boto3 client is built from the endpoint and region passed in (the blob-store settings)
- ``<scheme>://<location>?<params>`` for any scheme a package registers in the entry-point
  group ``retrain.sources`` (a callable ``(location, params) -> DataFrame``); this project
  registers ``simulator`` for its built-in traffic simulator

Every failure a user can cause becomes one ``DataSourceError`` line: a missing path, an empty
file, a CSV that is not UTF-8, bytes that are not a table at all.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import parse_qs, urlsplit

import pandas as pd

from registry.errors import DataSourceError

__all__ = [
    "EVENT_TIME",
    "SOURCE_ENTRY_POINTS",
    "TABLE_SUFFIXES",
    "DatasetSource",
    "is_large",
    "load_frame",
    "read_table_bytes",
    "source_size_bytes",
]

EVENT_TIME = "event_time"
"""The column that orders rows in time (holdouts are the latest rows by it)."""
SOURCE_ENTRY_POINTS = "retrain.sources"

TABLE_SUFFIXES = (".parquet", ".pq", ".csv")
_PARQUET_MAGIC = b"PAR1"
_GROWTH = 4  # a compressed Parquet file takes about this many times its size as a frame


@dataclass(frozen=True)
class DatasetSource:
    """A parsed source string: ``kind`` is ``file``, ``s3`` or a plug-in scheme."""

    kind: str
    location: str
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, source: str | Path) -> DatasetSource:
        text = str(source)
        if text.startswith("s3://"):
            parts = urlsplit(text)
            if not parts.netloc:
                raise DataSourceError(f"{text}: name a bucket, as in s3://bucket/prefix")
            return cls("s3", parts.netloc, {"prefix": parts.path.lstrip("/")})
        parts = urlsplit(text)
        if parts.scheme and "://" in text and len(parts.scheme) > 1:  # not a Windows drive
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            return cls(parts.scheme, parts.netloc, query)
        return cls("file", text)


class S3Options(TypedDict):
    """Where S3 sources live: ``load_frame(source, **options)``."""

    s3_endpoint_url: str | None
    s3_region: str | None


NO_S3 = S3Options(s3_endpoint_url=None, s3_region=None)


def load_frame(
    source: str | Path,
    *,
    s3_endpoint_url: str | None = None,
    s3_region: str | None = None,
    s3_client: Any = None,
    transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Read ``source`` into one frame; ``DataSourceError`` says what was wrong with it.

    ``transform`` (e.g. dropping personal columns) applies before the frame is returned, so a
    task that loads never hands the raw frame to anything else."""
    parsed = DatasetSource.parse(source)
    if parsed.kind == "s3":
        client = s3_client or _s3_client(s3_endpoint_url, s3_region)
        frame = _read_s3(client, parsed.location, parsed.params["prefix"])
    elif parsed.kind == "file":
        frame = _read_path(Path(parsed.location))
    else:
        frame = _read_plugin(parsed)
    return frame if transform is None else transform(frame)


def source_size_bytes(source: str | Path) -> int | None:
    """Bytes of a local Parquet source (a file, or a folder's Parquet files); None for any
    other source (CSV, S3, plug-ins), which is always read whole."""
    parsed = DatasetSource.parse(source)
    path = Path(parsed.location)
    if parsed.kind != "file" or not path.exists():
        return None
    if path.is_dir():
        files = [p for p in path.iterdir() if p.suffix.lower() in TABLE_SUFFIXES]
        if not files or any(p.suffix.lower() == ".csv" for p in files):
            return None
        return sum(p.stat().st_size for p in files)
    return path.stat().st_size if path.suffix.lower() in (".parquet", ".pq") else None


def is_large(source: str | Path, budget_mb: int | None) -> bool:
    """Whether ``source`` is a local Parquet table too large to load whole within
    ``budget_mb`` MiB (compressed on disk it grows several times in memory)."""
    size = source_size_bytes(source)
    return budget_mb is not None and size is not None and size * _GROWTH > budget_mb << 20


def read_table_bytes(data: bytes, name: str) -> pd.DataFrame:
    """Parse one file's bytes as Parquet (by magic number or suffix) or CSV."""
    if not data.strip():
        raise DataSourceError(f"{name} is empty; expected a Parquet or CSV table")
    if data[:4] == _PARQUET_MAGIC or name.endswith((".parquet", ".pq")):
        return _read_parquet(data, name)
    if b"\x00" in data[:65536]:
        raise DataSourceError(f"{name} is binary, not a CSV or Parquet table")
    return _read_csv(data, name)


def _read_path(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataSourceError(f"{path} does not exist; give a Parquet/CSV file or a folder of them")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in TABLE_SUFFIXES)
        if not files:
            raise DataSourceError(f"folder {path} has no .parquet or .csv files")
        return _concat([read_table_bytes(p.read_bytes(), str(p)) for p in files], str(path))
    if path.suffix.lower() not in (*TABLE_SUFFIXES, ""):
        raise DataSourceError(f"{path} is not a .parquet or .csv file")
    return read_table_bytes(path.read_bytes(), str(path))


def _read_parquet(data: bytes, name: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(pa.BufferReader(data)).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise DataSourceError(f"{name} is not a readable Parquet file: {_first_line(exc)}") from exc


def _read_csv(data: bytes, name: str) -> pd.DataFrame:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataSourceError(
            f"{name} is not UTF-8 text (byte {exc.start}); re-save the CSV as UTF-8"
        ) from exc
    try:
        frame = pd.read_csv(io.BytesIO(data), encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataSourceError(f"{name} is not a well-formed CSV table: {_first_line(exc)}") from exc
    if frame.columns.size < 2 and len(frame) == 0:
        raise DataSourceError(f"{name} has no rows and at most one column; not a table")
    if EVENT_TIME in frame.columns and not isinstance(frame[EVENT_TIME].dtype, pd.DatetimeTZDtype):
        # CSV has no types: event times come back as text, so restore them as UTC instants.
        # Unparseable times stay text: the data contract then reports the wrong type.
        with contextlib.suppress(ValueError, TypeError):
            frame[EVENT_TIME] = pd.to_datetime(frame[EVENT_TIME], utc=True, format="ISO8601")
    return frame


def _read_s3(client: Any, bucket: str, prefix: str) -> pd.DataFrame:
    from botocore.exceptions import BotoCoreError, ClientError

    where = f"s3://{bucket}/{prefix}"
    try:
        keys = [key for key, _ in s3_table_objects(client, bucket, prefix)]
        frames = [
            read_table_bytes(
                client.get_object(Bucket=bucket, Key=k)["Body"].read(), f"s3://{bucket}/{k}"
            )
            for k in sorted(keys)
        ]
    except (BotoCoreError, ClientError) as exc:
        raise DataSourceError(f"cannot read {where}: {_first_line(exc)}") from exc
    return _concat(frames, where)


def s3_table_objects(client: Any, bucket: str, prefix: str) -> list[tuple[str, int]]:
    """(key, size) of the Parquet and CSV objects under ``prefix``, sorted by key;
    DataSourceError when there is none."""
    objects: list[tuple[str, int]] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objects += [
            (o["Key"], int(o["Size"]))
            for o in page.get("Contents", [])
            if o["Key"].endswith(TABLE_SUFFIXES)
        ]
    if not objects:
        raise DataSourceError(f"s3://{bucket}/{prefix} holds no .parquet or .csv objects")
    return sorted(objects)


def spool_large_s3_table(
    source: str | Path,
    budget_mb: int,
    *,
    s3_endpoint_url: str | None = None,
    s3_region: str | None = None,
    s3_client: Any = None,
) -> tuple[Path, int] | None:
    """An ``s3://`` Parquet table too large to load whole within ``budget_mb``, downloaded
    object by object (streamed to disk, never held in memory) into a new local folder:
    (the folder, its size in bytes). None for any other source, a small one, or one with CSV
    objects (read whole, as before). The caller removes the folder."""
    import shutil
    import tempfile

    from botocore.exceptions import BotoCoreError, ClientError

    parsed = DatasetSource.parse(source)
    if parsed.kind != "s3":
        return None
    bucket, prefix = parsed.location, parsed.params["prefix"]
    client = s3_client or _s3_client(s3_endpoint_url, s3_region)
    try:
        objects = s3_table_objects(client, bucket, prefix)
        size = sum(n for _, n in objects)
        csv = any(key.lower().endswith(".csv") for key, _ in objects)
        if csv or size * _GROWTH <= budget_mb << 20:
            return None
        spool = Path(tempfile.mkdtemp(prefix="retrain-s3-table-"))
        try:
            for i, (key, _) in enumerate(objects):  # names keep the keys' order
                client.download_file(bucket, key, str(spool / f"part-{i:06d}.parquet"))
        except BaseException:
            shutil.rmtree(spool, ignore_errors=True)
            raise
    except (BotoCoreError, ClientError) as exc:
        raise DataSourceError(f"cannot read s3://{bucket}/{prefix}: {_first_line(exc)}") from exc
    return spool, size


def _s3_client(endpoint_url: str | None, region: str | None) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region)


def _read_plugin(source: DatasetSource) -> pd.DataFrame:
    """Read a ``<scheme>://`` source through the reader registered for that scheme."""
    from importlib.metadata import entry_points

    found = entry_points(group=SOURCE_ENTRY_POINTS, name=source.kind)
    if not found:
        known = ", ".join(sorted({"s3", *entry_points(group=SOURCE_ENTRY_POINTS).names}))
        raise DataSourceError(
            f"{source.kind}://{source.location}: unknown source scheme {source.kind!r}; "
            f"use a path or one of {known}"
        )
    reader = next(iter(found)).load()
    frame = reader(source.location, dict(source.params))
    if not isinstance(frame, pd.DataFrame):
        raise DataSourceError(f"source scheme {source.kind!r} did not return a table")
    return frame


def _concat(frames: list[pd.DataFrame], where: str) -> pd.DataFrame:
    columns = list(frames[0].columns)
    for frame in frames[1:]:
        if list(frame.columns) != columns:
            raise DataSourceError(f"{where}: files disagree on their columns; keep one layout")
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
