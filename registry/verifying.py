"""Telling a damaged blob from a damaged read, before anything is moved aside.

One read that does not hash to the digest proves only that *that read* was wrong: a flaky
network, proxy or disk controller gives the same symptom as rot. So a blob counts as corrupt
only when the store's own checksum says the stored object is not those bytes, or when a
second, independent read hashes to the same wrong digest as the first. Reads that disagree
with each other (or with an intact store checksum) are reported as a transport problem and
never quarantined; and when more than a small share of blobs fail their first read in one run,
the store or the transport is suspect as a whole and nothing is quarantined at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from registry.errors import BlobNotFoundError, CorruptBlobError
from registry.records import BlobProblem, BlobRecord

if TYPE_CHECKING:
    from registry.blobstore import BlobStore

__all__ = [
    "CORRUPT",
    "MISSING",
    "STORE_INTACT",
    "UNSTABLE",
    "ChecksumStore",
    "RereadStore",
    "Scan",
    "judge",
    "scan",
    "suspect_store",
]

MISSING = "missing"
CORRUPT = "corrupt"  # proven: the only problem that is ever quarantined
UNSTABLE = "unstable reads (transport?)"
STORE_INTACT = "bad reads, store checksum intact (transport?)"

# More first-read failures than this share of the blobs checked (and than the floor) in one
# run is not rot, which strikes a blob here and there: it is the store or the transport.
_BULK_SHARE = 0.05
_BULK_FLOOR = 3


@runtime_checkable
class RereadStore(Protocol):
    """A store that can read a blob again bypassing caches; returns the digest of that read."""

    def reread(self, digest: str) -> str: ...


@runtime_checkable
class ChecksumStore(Protocol):
    """A store that keeps its own checksum of each object: True when it matches ``digest``
    (or ``recorded``, the checksum noted at put time), False when not, None if it has none."""

    def checksum_matches(self, digest: str, recorded: str | None) -> bool | None: ...


@dataclass
class Scan:
    """The first pass: every catalogued blob read once."""

    checked: int = 0
    size: int = 0
    missing: list[BlobProblem] = field(default_factory=list)
    suspects: list[tuple[BlobRecord, CorruptBlobError]] = field(default_factory=list)


def scan(
    blobs: BlobStore,
    records: Sequence[BlobRecord],
    progress: Callable[[int, int], None] | None = None,
) -> Scan:
    """Read every blob once; a failed read makes it a suspect, not (yet) corrupt."""
    found = Scan()
    for record in records:
        try:
            found.size += blobs.check(record.digest)
        except BlobNotFoundError as exc:
            found.missing.append(BlobProblem(record.digest, MISSING, str(exc)))
        except CorruptBlobError as exc:
            found.suspects.append((record, exc))
        found.checked += 1
        if progress is not None:
            progress(found.checked, len(records))
    return found


def suspect_store(found: Scan) -> str | None:
    """Why the store or transport as a whole is suspect in this run, or None if it is not."""
    failed = len(found.suspects)
    if failed <= max(_BULK_FLOOR, int(found.checked * _BULK_SHARE)):
        return None
    return (
        f"{failed} of {found.checked} blobs failed their first read: rot does not strike so "
        "many at once, so the store or the transport (network, proxy, endpoint, disk) is "
        "suspect and nothing is quarantined on such evidence; fix it and run "
        "`retrain registry verify` again"
    )


def judge(blobs: BlobStore, record: BlobRecord, first: CorruptBlobError) -> BlobProblem:
    """Decide whether a blob whose first read was wrong is really corrupt (see module doc)."""
    digest = record.digest
    if isinstance(blobs, ChecksumStore):
        matches = blobs.checksum_matches(digest, record.store_checksum)
        if matches is False:
            return BlobProblem(digest, CORRUPT, f"{first}; the store's own checksum agrees")
        if matches is True:
            return BlobProblem(
                digest, STORE_INTACT, f"{first}; but the store's own checksum says it is intact"
            )
    try:
        second = _read_again(blobs, digest)
    except BlobNotFoundError as exc:  # moved or collected between the two reads
        return BlobProblem(digest, MISSING, str(exc))
    if second == digest:
        return BlobProblem(digest, UNSTABLE, f"{first}; a second read was intact")
    if second == first.actual:
        return BlobProblem(digest, CORRUPT, f"{first}; a second read agrees")
    return BlobProblem(
        digest, UNSTABLE, f"{first}; a second read hashed to {second or 'something else'}"
    )


def _read_again(blobs: BlobStore, digest: str) -> str | None:
    """The digest an independent second read hashes to (None: a store that cannot say)."""
    if isinstance(blobs, RereadStore):
        return blobs.reread(digest)
    try:
        blobs.check(digest)
    except CorruptBlobError as exc:
        return exc.actual
    return digest
