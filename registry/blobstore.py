"""Blob stores behind one protocol: a local folder (``registry.localstore``) or S3
(``registry.s3store``). Blobs live under ``sha256/<2 hex>/<64 hex>``; every read re-hashes and
refuses bytes that do not match their digest.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlparse

from registry.errors import ConfigError
from registry.localstore import LocalBlobStore
from registry.records import BlobInfo, StoredBlob
from registry.redaction import redact_url
from registry.s3store import S3BlobStore

__all__ = ["BlobStore", "open_blob_store"]


class BlobStore(Protocol):
    """What the registry needs from an object store."""

    url: str

    def put_bytes(self, data: bytes, *, fresh: bool = False) -> StoredBlob: ...
    def put_file(self, path: Path) -> StoredBlob: ...
    def put_stream(self, stream: BinaryIO) -> StoredBlob: ...
    def exists(self, digest: str) -> bool: ...
    def stat(self, digest: str) -> BlobInfo | None: ...
    def get_bytes(self, digest: str) -> bytes: ...
    def get_to_file(self, digest: str, path: Path) -> None: ...
    def check(self, digest: str) -> int: ...
    def list(self) -> Iterator[BlobInfo]: ...
    def delete(self, digest: str) -> None: ...
    def quarantine(self, digest: str) -> None: ...
    def clean_temp(self, older_than: datetime, *, dry_run: bool) -> int: ...
    def close(self) -> None: ...


def open_blob_store(
    url: str, *, s3_endpoint_url: str | None = None, s3_region: str | None = None
) -> BlobStore:
    """The store a URL names: ``file:///folder``, a plain folder path, or ``s3://bucket/prefix``."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(
                f"blob URL {redact_url(url)!r} names no bucket: use s3://bucket/prefix"
            )
        return S3BlobStore(
            parsed.netloc, parsed.path.strip("/"), endpoint_url=s3_endpoint_url, region=s3_region
        )
    if parsed.scheme == "file":
        return LocalBlobStore(Path(unquote(parsed.path)))
    if parsed.scheme == "" and url:
        return LocalBlobStore(Path(url))
    raise ConfigError(
        f"unsupported blob URL {redact_url(url)!r}: use file:///folder or s3://bucket/prefix"
    )
