"""An in-memory blob store with the registry's blob store protocol, for ``Registry(...)``
in tests: no folder, no S3, and faults on demand (``corrupt``, ``available = False``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from registry.errors import BlobNotFoundError, ConfigError, CorruptBlobError, StoreUnavailableError
from registry.hashing import digest_bytes
from registry.records import BlobInfo, StoredBlob

if TYPE_CHECKING:
    pass


__all__ = ["InMemoryBlobStore"]


# -- blob store ----------------------------------------------------------------------------------
class InMemoryBlobStore:
    """The registry's ``BlobStore`` protocol in memory: ``Registry(InMemoryBlobStore(), catalog)``.

    Reads re-hash like the real stores and refuse corrupt bytes. ``corrupt`` overwrites a blob
    (bit rot); ``available = False`` makes every call fail with ``StoreUnavailableError`` (an
    unreachable store). ``now`` dates writes (for ``gc``'s grace period). Thread-safe.
    """

    def __init__(
        self, *, name: str = "blobs", now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.url = f"memory://{name}"
        self.available = True
        self._now = now
        self._blobs: dict[str, tuple[bytes, datetime]] = {}
        self._quarantine: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def _check_up(self) -> None:
        if not self.available:
            raise StoreUnavailableError(f"blob store {self.url} is unreachable (made so by a test)")

    # -- writing -------------------------------------------------------------------------------
    def put_bytes(self, data: bytes, *, fresh: bool = False) -> StoredBlob:
        """Store ``data`` under its digest (``fresh`` is a hint the real stores use; ignored)."""
        self._check_up()
        payload = bytes(data)
        digest = digest_bytes(payload)
        with self._lock:
            held = self._blobs.get(digest)
            if held is not None and len(held[0]) == len(payload):
                return StoredBlob(digest, len(payload), written=False)
            self._blobs[digest] = (payload, self._now())
        return StoredBlob(digest, len(payload), written=True)

    def put_file(self, path: Path) -> StoredBlob:
        """Store a file's bytes."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}; check the path") from exc
        return self.put_bytes(data)

    def put_stream(self, stream: BinaryIO) -> StoredBlob:
        """Store everything readable from ``stream``."""
        return self.put_bytes(stream.read())

    # -- reading -------------------------------------------------------------------------------
    def exists(self, digest: str) -> bool:
        self._check_up()
        with self._lock:
            return digest in self._blobs

    def stat(self, digest: str) -> BlobInfo | None:
        self._check_up()
        with self._lock:
            held = self._blobs.get(digest)
        return None if held is None else BlobInfo(digest, len(held[0]), held[1])

    def get_bytes(self, digest: str) -> bytes:
        """The verified bytes (``BlobNotFoundError`` / ``CorruptBlobError`` otherwise)."""
        self._check_up()
        with self._lock:
            held = self._blobs.get(digest)
        if held is None:
            raise BlobNotFoundError(f"no blob {digest} in {self.url}")
        actual = digest_bytes(held[0])
        if actual != digest:
            raise CorruptBlobError(f"blob {digest} in {self.url} hashes to {actual}: corrupt")
        return held[0]

    def get_to_file(self, digest: str, path: Path) -> None:
        """Write the verified bytes to ``path``."""
        Path(path).write_bytes(self.get_bytes(digest))

    def check(self, digest: str) -> int:
        """Re-hash one blob; its size."""
        return len(self.get_bytes(digest))

    def list(self) -> Iterator[BlobInfo]:
        """Every blob, by digest."""
        self._check_up()
        with self._lock:
            held = sorted(self._blobs.items())
        for digest, (data, modified) in held:
            yield BlobInfo(digest, len(data), modified)

    # -- removing ------------------------------------------------------------------------------
    def delete(self, digest: str) -> None:
        self._check_up()
        with self._lock:
            self._blobs.pop(digest, None)

    def quarantine(self, digest: str) -> None:
        """Move a blob aside, so putting the original bytes again restores it."""
        self._check_up()
        with self._lock:
            held = self._blobs.pop(digest, None)
            if held is not None:
                self._quarantine[digest] = held[0]

    def clean_temp(self, older_than: datetime, *, dry_run: bool) -> int:
        """Nothing is ever half-written in memory: always 0."""
        return 0

    def close(self) -> None:
        """Nothing to release."""

    # -- for tests -----------------------------------------------------------------------------
    def corrupt(self, digest: str, data: bytes = b"bit rot") -> None:
        """Replace the stored bytes of ``digest`` (which then no longer hash to it)."""
        with self._lock:
            _, modified = self._blobs[digest]
            self._blobs[digest] = (bytes(data), modified)

    @property
    def quarantined(self) -> tuple[str, ...]:
        """Digests moved aside by ``quarantine``."""
        with self._lock:
            return tuple(sorted(self._quarantine))


if TYPE_CHECKING:  # the fake satisfies the protocol it stands in for (checked by mypy)
    from registry.blobstore import BlobStore

    _blob_store: BlobStore = InMemoryBlobStore()
