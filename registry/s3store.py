"""Blobs in S3 (or any S3-compatible store) through boto3.

Puts send the sha256 checksum so the server rejects damaged uploads, and are conditional
(``If-None-Match: *``): a 412 means the same bytes are already stored, which is success. Large
blobs go up in parts; S3 then only keeps a checksum of part checksums, so the whole-object
sha256 is the digest recorded in SQL. Every read re-hashes the bytes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import weakref
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NoReturn

from registry.errors import BlobNotFoundError, ConfigError, StoreUnavailableError
from registry.hashing import CHUNK_SIZE, blob_key, digest_file, digest_from_key, digest_of_hash
from registry.localfiles import HashingWriter, staged_file
from registry.records import BlobInfo, StoredBlob
from registry.s3client import (
    NOT_FOUND,
    PRECONDITION_FAILED,
    abort_stale_uploads,
    build_client,
    complete_upload,
    corrupt_error,
    error_code,
    put_if_absent,
    stored_checksum_matches,
    unavailable_error,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


__all__ = ["S3BlobStore"]


def _drop_client(ref: weakref.ref[S3BlobStore]) -> None:
    store = ref()
    if store is not None:
        store._client = None


class S3BlobStore:
    """Blobs as objects ``<prefix>/sha256/<2 hex>/<64 hex>`` in one bucket."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        multipart_threshold: int = 64 * 1024 * 1024,
        part_size: int = 16 * 1024 * 1024,
    ) -> None:
        if part_size < 5 * 1024 * 1024:
            raise ConfigError("S3 part size must be at least 5 MiB (an S3 limit)")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._client: S3Client | None = None
        # boto3 clients are not fork-safe: a forked child builds its own on first use.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _drop_client(ref))

    @property
    def client(self) -> S3Client:
        """The boto3 client, built on first use (never at import or construction)."""
        if self._client is None:
            self._client = build_client(self.endpoint_url, self.region)
        return self._client

    def key_of(self, digest: str) -> str:
        """The object key of a blob."""
        key = blob_key(digest)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, exc: Exception, doing: str) -> NoReturn:
        raise unavailable_error(
            exc, doing, bucket=self.bucket, url=self.url, endpoint_url=self.endpoint_url
        ) from exc

    # -- writing -----------------------------------------------------------------------------
    def put_bytes(self, data: bytes, *, fresh: bool = False) -> StoredBlob:
        """Store ``data`` (``fresh`` is a hint for local stores; S3 puts are conditional)."""
        hex_digest = hashlib.sha256(data).hexdigest()
        digest = "sha256:" + hex_digest
        if len(data) > self.multipart_threshold:
            if self.exists(digest):
                return StoredBlob(digest, len(data), written=False)
            view = memoryview(data)
            parts = (view[i : i + self.part_size] for i in range(0, len(view), self.part_size))
            return self._put_multipart(digest, len(data), parts)
        try:
            written = put_if_absent(self.client, self.bucket, self.key_of(digest), data, hex_digest)
        except Exception as exc:
            self._fail(exc, f"storing {digest}")
        return StoredBlob(digest, len(data), written=written)

    def _put_multipart(
        self, digest: str, size: int, parts: Iterator[memoryview | bytes]
    ) -> StoredBlob:
        key = self.key_of(digest)
        try:
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                ChecksumAlgorithm="SHA256",
                Metadata={"sha256": digest[7:]},
            )["UploadId"]
        except Exception as exc:
            self._fail(exc, f"starting the upload of {digest}")
        try:
            reported, ours = complete_upload(self.client, self.bucket, key, upload_id, parts)
        except Exception as exc:  # the upload is aborted by now
            if error_code(exc) in PRECONDITION_FAILED:
                return StoredBlob(digest, size, written=False)
            self._fail(exc, f"uploading {digest}")
        # S3's checksum of a multipart object (``ours``) is kept beside the whole-object digest,
        # so either can be checked against the store.
        if reported and reported != ours:
            self.delete(digest)
            raise StoreUnavailableError(
                f"S3 at {self.url} stored {digest} with checksum {reported}, expected {ours}: "
                "the upload was damaged and removed; put it again"
            )
        return StoredBlob(digest, size, written=True, store_checksum=ours)

    def put_file(self, path: Path) -> StoredBlob:
        try:
            size = path.stat().st_size
            # A small file is read once (put_bytes hashes it); a big one is hashed, then streamed.
            small = path.read_bytes() if size <= self.multipart_threshold else None
            digest = digest_file(path) if small is None else ""
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}; check the path") from exc
        if small is not None:
            return self.put_bytes(small)
        if self.exists(digest):
            return StoredBlob(digest, size, written=False)
        with path.open("rb") as handle:
            parts = iter(lambda: handle.read(self.part_size), b"")
            stored = self._put_multipart(digest, size, parts)
        if digest_file(path) != digest:
            self.delete(digest)  # the file changed while it was uploaded
            raise ConfigError(f"{path} changed while it was being stored; try again")
        return stored

    def put_stream(self, stream: BinaryIO) -> StoredBlob:
        # The key needs the digest, so a stream is spooled (and hashed) to a local temp first.
        with tempfile.TemporaryDirectory(prefix="retrain-spool-") as folder:
            spool = Path(folder) / "blob"
            with spool.open("wb") as out:
                while chunk := stream.read(CHUNK_SIZE):
                    out.write(chunk)
            return self.put_file(spool)

    # -- reading -----------------------------------------------------------------------------
    def exists(self, digest: str) -> bool:
        return self.stat(digest) is not None

    def stat(self, digest: str) -> BlobInfo | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key_of(digest))
        except Exception as exc:
            if error_code(exc) in NOT_FOUND:
                return None
            self._fail(exc, f"looking up {digest}")
        return BlobInfo(digest, int(head["ContentLength"]), head["LastModified"])

    def _chunks(self, digest: str) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key_of(digest))["Body"]
        except Exception as exc:
            if error_code(exc) in NOT_FOUND:
                raise BlobNotFoundError(
                    f"no blob {digest} in {self.url}: check the digest with `retrain registry ls`"
                ) from exc
            self._fail(exc, f"reading {digest}")
        try:
            while chunk := body.read(CHUNK_SIZE):
                yield chunk
        except Exception as exc:
            # botocore checks S3's checksum once the last chunk is out; every caller hashes
            # the chunks itself, and that hash decides (and tells verify what was read).
            if type(exc).__name__ != "FlexibleChecksumError":
                self._fail(exc, f"reading {digest}")
        finally:
            body.close()

    def get_bytes(self, digest: str) -> bytes:
        hasher = hashlib.sha256()
        pieces: list[bytes] = []
        for chunk in self._chunks(digest):
            hasher.update(chunk)
            pieces.append(chunk)
        actual = digest_of_hash(hasher)
        if actual != digest:
            raise corrupt_error(digest, self.url, actual)
        return b"".join(pieces)

    def get_to_file(self, digest: str, path: Path) -> None:
        path = path.expanduser().resolve()
        with staged_file(path) as staged:
            writer = HashingWriter(staged.fd)
            for chunk in self._chunks(digest):
                try:
                    writer.write(chunk)
                except OSError as exc:
                    raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc
            actual = digest_of_hash(writer.hasher)
            if actual != digest:
                raise corrupt_error(digest, self.url, actual)
            staged.commit()  # only verified bytes ever get a name

    def _hash_read(self, digest: str) -> tuple[str, int]:
        hasher = hashlib.sha256()
        size = 0
        for chunk in self._chunks(digest):
            hasher.update(chunk)
            size += len(chunk)
        return digest_of_hash(hasher), size

    def check(self, digest: str) -> int:
        actual, size = self._hash_read(digest)
        if actual != digest:
            raise corrupt_error(digest, self.url, actual)
        return size

    def reread(self, digest: str) -> str:
        """The digest of a second, separate GET of the object (for verify)."""
        return self._hash_read(digest)[0]

    def checksum_matches(self, digest: str, recorded: str | None) -> bool | None:
        """Whether S3's stored checksum says the object holds ``digest``'s bytes (or None)."""
        try:
            return stored_checksum_matches(
                self.client, self.bucket, self.key_of(digest), digest, recorded
            )
        except Exception as exc:
            if error_code(exc) in NOT_FOUND:
                return None
            self._fail(exc, f"looking up {digest}")

    def list(self) -> Iterator[BlobInfo]:
        root = f"{self.prefix}/sha256/" if self.prefix else "sha256/"
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=root
            )
            for page in pages:
                for item in page.get("Contents", []):
                    digest = digest_from_key(item["Key"])
                    if digest is not None:
                        yield BlobInfo(digest, int(item["Size"]), item["LastModified"])
        except Exception as exc:
            self._fail(exc, "listing blobs")

    # -- removing ----------------------------------------------------------------------------
    def delete(self, digest: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key_of(digest))
        except Exception as exc:
            self._fail(exc, f"deleting {digest}")

    def quarantine(self, digest: str) -> None:
        """Move a (corrupt) object aside under ``quarantine/`` so that a re-put can restore it."""
        key = self.key_of(digest)
        aside = (
            f"{self.prefix}/quarantine/{digest[7:]}" if self.prefix else f"quarantine/{digest[7:]}"
        )
        try:
            self.client.copy_object(
                Bucket=self.bucket, Key=aside, CopySource={"Bucket": self.bucket, "Key": key}
            )
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if error_code(exc) in NOT_FOUND:
                return
            self._fail(exc, f"moving {digest} aside")

    def clean_temp(self, older_than: datetime, *, dry_run: bool) -> int:
        """Abort multipart uploads started before ``older_than`` (left by killed writers)."""
        try:
            return abort_stale_uploads(
                self.client, self.bucket, self.prefix, older_than, dry_run=dry_run
            )
        except Exception as exc:
            self._fail(exc, "cleaning unfinished uploads")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
