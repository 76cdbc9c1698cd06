"""The ``Registry``: a blob store and a SQL catalog kept consistent with each other.

Write order is blob first, then row, so a row never points at a missing blob; a failure in
between leaves an orphan blob that ``gc`` collects once it is older than the grace period.
``gc`` also collects the snapshots a failed retrain stored that nothing else uses, rows and all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from registry.blobstore import BlobStore, open_blob_store
from registry.catalog import Catalog
from registry.errors import ConfigError, RegistryError
from registry.hashing import parse_digest
from registry.records import BlobInfo, GcReport, StoredBlob, VerifyReport
from registry.schema import utcnow
from registry.verifying import CORRUPT, judge, scan, suspect_store

__all__ = ["Registry"]

_GC_BATCH = 500
_FRESH_HINT_MIN = 64 * 1024 * 1024


class Registry:
    """Content-addressed blobs plus the catalog that indexes them."""

    def __init__(self, blobs: BlobStore, catalog: Catalog, *, link_base: str | None = None) -> None:
        self.blobs = blobs
        self.catalog = catalog
        # Where these blobs can be read over HTTP (``<link_base>/blobs/sha256/<hex>``), for
        # links people open from a browser; ``None``: links name the store itself.
        self.link_base = link_base

    @classmethod
    def open(
        cls,
        database_url: str,
        blob_url: str,
        *,
        s3_endpoint_url: str | None = None,
        s3_region: str | None = None,
        link_base: str | None = None,
    ) -> Registry:
        """Open (and if new, create) the catalog and the blob store the URLs name."""
        blobs = open_blob_store(blob_url, s3_endpoint_url=s3_endpoint_url, s3_region=s3_region)
        return cls(blobs, Catalog.open(database_url), link_base=link_base)

    # -- writing -----------------------------------------------------------------------------
    def _record(self, put: Callable[[], StoredBlob], media_type: str) -> str:
        # A blob collected by gc between our put and our row is noticed inside the row's
        # transaction (gc cannot overlap it); then the bytes are put again.
        for _ in range(3):
            stored = put()
            digest = stored.digest
            if self.catalog.record_blob(
                digest,
                stored.size,
                media_type,
                store_checksum=stored.store_checksum,
                still_stored=functools.partial(self.blobs.exists, digest),
            ):
                return digest
        raise RegistryError("a blob kept being collected while it was stored; run gc less often")

    def put_bytes(self, data: bytes, *, media_type: str = "application/octet-stream") -> str:
        """Store ``data``; the same bytes always give the same digest and one row."""
        # No catalogued blob of this size means these bytes cannot be stored yet (orphans
        # aside), so the store may hash them while writing instead of hashing first.
        fresh = len(data) >= _FRESH_HINT_MIN and not self.catalog.has_blob_of_size(len(data))
        return self._record(lambda: self.blobs.put_bytes(data, fresh=fresh), media_type)

    def put_file(self, path: Path, *, media_type: str = "application/octet-stream") -> str:
        """Store a file's bytes, streamed (never read whole into memory on the local store)."""
        return self._record(lambda: self.blobs.put_file(Path(path)), media_type)

    def put_stream(self, stream: BinaryIO, *, media_type: str = "application/octet-stream") -> str:
        """Store everything readable from ``stream`` (read once)."""
        stored = self.blobs.put_stream(stream)

        def again() -> StoredBlob:
            return stored if self.blobs.exists(stored.digest) else _gone()

        return self._record(again, media_type)

    # -- reading -----------------------------------------------------------------------------
    def get_bytes(self, digest: str) -> bytes:
        """The verified bytes of a blob (CorruptBlobError / BlobNotFoundError otherwise)."""
        return self.blobs.get_bytes(parse_digest(digest))

    def get_to_file(self, digest: str, path: Path) -> None:
        """Write a blob's verified bytes to ``path`` (nothing is left there if they are bad)."""
        self.blobs.get_to_file(parse_digest(digest), Path(path))

    # -- upkeep ------------------------------------------------------------------------------
    def verify(
        self, progress: Callable[[int, int], None] | None = None, *, quarantine: bool = False
    ) -> VerifyReport:
        """Re-hash every catalogued blob; list the corrupt and missing ones, and orphans.

        A blob whose read fails is read again (or checked against the store's own checksum)
        before it is called corrupt; reads that disagree are reported as a transport problem.
        With ``quarantine`` only blobs proven corrupt are moved aside, and none at all when so
        many fail that the store or the transport is suspect (see ``registry.verifying``).
        A re-put of the original bytes restores a quarantined blob."""
        records = self.catalog.list_blobs()
        found = scan(self.blobs, records, progress)
        judged = [judge(self.blobs, record, first) for record, first in found.suspects]
        suspect = suspect_store(found)
        quarantined: list[str] = []
        if quarantine and suspect is None:
            for problem in judged:
                if problem.problem == CORRUPT:
                    self.blobs.quarantine(problem.digest)
                    quarantined.append(problem.digest)
        known = {record.digest for record in records}
        orphans = [info.digest for info in self.blobs.list() if info.digest not in known]
        return VerifyReport(
            found.checked,
            found.size,
            [*found.missing, *judged],
            orphans,
            quarantined=quarantined,
            store_suspect=suspect,
        )

    def gc(self, grace: timedelta = timedelta(hours=24), *, dry_run: bool = True) -> GcReport:
        """Delete blobs older than ``grace`` that no row references, and the snapshots failed
        retrains left that nothing else uses (``registry.leftovers``); a dry run by default."""
        try:
            cutoff = utcnow() - grace
        except OverflowError as exc:
            raise ConfigError(
                f"a grace period of {grace} reaches before year 1: use at most 100 years"
            ) from exc
        listed = list(self.blobs.list())
        old: list[BlobInfo] = [info for info in listed if info.modified <= cutoff]
        by_digest = {info.digest: info for info in old}
        collected: list[BlobInfo] = []
        for start in range(0, len(old), _GC_BATCH):
            batch = [info.digest for info in old[start : start + _GC_BATCH]]
            orphans = self.catalog.collect_unreferenced(
                batch, None if dry_run else self.blobs.delete
            )
            collected.extend(by_digest[digest] for digest in orphans)
        leftovers = self.catalog.collect_failed_run_snapshots(
            by_digest.keys(), None if dry_run else self.blobs.delete
        )
        collected.extend(by_digest[digest] for digest in leftovers)
        stale = self.blobs.clean_temp(cutoff, dry_run=dry_run)
        young = len(listed) - len(old)
        return GcReport(dry_run, len(listed), collected, young, stale, leftovers)

    def close(self) -> None:
        """Release database connections and the store's client."""
        self.catalog.close()
        self.blobs.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _gone() -> StoredBlob:
    raise RegistryError("a streamed blob was collected before its row was written; put it again")
