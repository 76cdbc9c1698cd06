"""What a failed retrain left behind: the dataset snapshots it stored before it stopped.

A retrain stores its batch, training and holdout snapshots (blob and dataset row) before it
validates and trains; when it then fails, its ``run.failed`` event lists them under
``snapshots``. Their blobs have catalog rows, so plain garbage collection (orphans only) would
keep them forever. ``collect_failed_run_snapshots`` lets ``Registry.gc`` collect such a
snapshot once nothing else uses it: no model version (bundle or lineage), no artifact (a
champion's holdout, a report), no event other than ``run.failed``, and no dataset row under
a name the failed runs did not give it (a snapshot someone took on purpose is kept).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import Text, cast, delete, select, text
from sqlalchemy.orm import Session

from registry.schema import ArtifactRow, BlobRow, DatasetRow, EventRow, ModelVersionRow
from registry.transactions import CatalogBase

__all__ = ["FAILED_RUN_EVENT", "GC_LOCK_KEY", "LeftoversMixin", "snapshot_entries"]

FAILED_RUN_EVENT = "run.failed"
"""The event a retrain that stopped on its data or spec appends (``tasks.pipeline.failures``)."""

# Blob-row inserts take this advisory lock shared, garbage collection takes it exclusive.
GC_LOCK_KEY = 0x5265_7472_6169_6E02


def snapshot_entries(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, digest) of each snapshot a ``run.failed`` payload lists (malformed ones skipped)."""
    entries = payload.get("snapshots") or []
    return [
        (str(entry["name"]), str(entry["digest"]))
        for entry in entries
        if isinstance(entry, dict) and entry.get("name") and entry.get("digest")
    ]


class LeftoversMixin(CatalogBase):
    """Collecting the snapshots of failed runs that nothing else references."""

    def collect_failed_run_snapshots(
        self, digests: Collection[str], delete_blob: Callable[[str], None] | None
    ) -> list[str]:
        """Which of ``digests`` (blobs old enough to collect) are snapshots of failed runs that
        nothing else references. Unless ``delete_blob`` is None (a dry run), their dataset
        rows and blob rows are deleted and each digest is passed to ``delete_blob``, all in
        one transaction under the GC lock, so no row is left pointing at a deleted blob."""
        wanted = set(digests)

        def op(s: Session) -> list[str]:
            if self.dialect == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": GC_LOCK_KEY})
            names: dict[str, set[str]] = {}
            failed = select(EventRow.payload).where(EventRow.kind == FAILED_RUN_EVENT)
            for payload in s.scalars(failed):
                for name, digest in snapshot_entries(dict(payload or {})):
                    if digest in wanted:
                        names.setdefault(digest, set()).add(name)
            unused = [d for d in sorted(names) if not _referenced(s, d, names[d])]
            if delete_blob is not None:
                for digest in unused:
                    s.execute(delete(DatasetRow).where(DatasetRow.digest == digest))
                    s.execute(delete(BlobRow).where(BlobRow.digest == digest))
                    delete_blob(digest)
            return unused

        return self._run(op, write=delete_blob is not None)


def _referenced(s: Session, digest: str, failed_names: set[str]) -> bool:
    """Whether anything but the failed runs' own rows and events uses ``digest``."""
    checks: list[Any] = [
        select(ModelVersionRow.id).where(
            (ModelVersionRow.bundle_digest == digest)
            | cast(ModelVersionRow.lineage, Text).contains(digest)
        ),
        select(ArtifactRow.id).where(ArtifactRow.digest == digest),
        select(EventRow.id).where(
            (EventRow.kind != FAILED_RUN_EVENT) & cast(EventRow.payload, Text).contains(digest)
        ),
        select(DatasetRow.id).where(
            (DatasetRow.digest == digest) & DatasetRow.name.not_in(sorted(failed_names))
        ),
    ]
    return any(s.scalars(query.limit(1)).first() is not None for query in checks)
