"""Expiring rows past their retention: the catalog side of ``retrain.retention``.

The registry knows nothing of specs: the caller says which rows are old enough (a cutoff per
row name) and which digests must stay; here the rows are listed, the digests live model
versions name in their lineage are found, and the chosen rows are deleted together with the
blobs nothing references any more, in one transaction under the GC lock (a row never points
at a deleted blob). The event log is append-only and is never touched: it holds digests,
not data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Text, cast, delete, select, text
from sqlalchemy.orm import Session

from registry.hashing import digests_in
from registry.leftovers import GC_LOCK_KEY
from registry.schema import AliasRow, ArtifactRow, BlobRow, DatasetRow, ModelVersionRow
from registry.transactions import CatalogBase

__all__ = ["AgedRow", "aged_rows", "expire_rows", "live_digests"]

LIVE_STATUSES = ("candidate", "champion")
"""Statuses whose versions may still serve or be promoted (so may still need their data)."""


@dataclass(frozen=True)
class AgedRow:
    """A dataset snapshot or a stored report, with when it was stored."""

    table: Literal["dataset", "artifact"]
    id: int
    name: str
    kind: str
    digest: str
    created_at: datetime

    @property
    def label(self) -> str:
        what = "snapshot" if self.table == "dataset" else self.kind
        return f"{what} {self.name} {self.digest[:19]}"


def aged_rows(
    catalog: CatalogBase, before: datetime, artifact_kinds: Collection[str]
) -> list[AgedRow]:
    """Dataset rows, and artifact rows of ``artifact_kinds``, stored before ``before``."""
    cutoff = _utc(before)

    def op(s: Session) -> list[AgedRow]:
        out = [
            AgedRow("dataset", r.id, r.name, "snapshot", r.digest, _utc(r.created_at))
            for r in s.scalars(select(DatasetRow).order_by(DatasetRow.id))
        ]
        if artifact_kinds:
            query = select(ArtifactRow).where(ArtifactRow.kind.in_(sorted(artifact_kinds)))
            out += [
                AgedRow("artifact", r.id, r.name, r.kind, r.digest, _utc(r.created_at))
                for r in s.scalars(query.order_by(ArtifactRow.id))
            ]
        return [row for row in out if row.created_at < cutoff]

    return catalog._run(op, write=False)


def live_digests(catalog: CatalogBase) -> dict[str, list[str]]:
    """Every digest a live version's lineage names (``dataset_digest``, ``holdout_digest`` ...),
    with the versions that need it (``loan-default v3``). Live: status candidate or champion,
    or an alias (champion, canary, shadow ...) points at it."""

    def op(s: Session) -> dict[str, list[str]]:
        aliased = {(a.model, a.version) for a in s.scalars(select(AliasRow))}
        needed: dict[str, list[str]] = {}
        for row in s.scalars(select(ModelVersionRow).order_by(ModelVersionRow.id)):
            if row.status not in LIVE_STATUSES and (row.model, row.version) not in aliased:
                continue
            for digest in sorted(digests_in(json.dumps(row.lineage, default=str))):
                needed.setdefault(digest, []).append(f"{row.model} v{row.version}")
        return needed

    return catalog._run(op, write=False)


def expire_rows(
    catalog: CatalogBase, rows: Sequence[AgedRow], delete_blob: Callable[[str], None]
) -> list[str]:
    """Delete ``rows`` and then each of their blobs that no row references any more (dataset,
    artifact, model bundle or a model version's lineage); returns the blobs deleted."""

    def op(s: Session) -> list[str]:
        if catalog.dialect == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": GC_LOCK_KEY})
        for row in rows:
            table: Any = DatasetRow if row.table == "dataset" else ArtifactRow
            s.execute(delete(table).where(table.id == row.id))
        gone: list[str] = []
        for digest in sorted({row.digest for row in rows}):
            if not _still_used(s, digest):
                s.execute(delete(BlobRow).where(BlobRow.digest == digest))
                delete_blob(digest)
                gone.append(digest)
        return gone

    return catalog._run(op, write=True)


def _still_used(s: Session, digest: str) -> bool:
    checks: list[Any] = [
        select(DatasetRow.id).where(DatasetRow.digest == digest),
        select(ArtifactRow.id).where(ArtifactRow.digest == digest),
        select(ModelVersionRow.id).where(
            (ModelVersionRow.bundle_digest == digest)
            | (
                ModelVersionRow.status.in_(LIVE_STATUSES)
                & cast(ModelVersionRow.lineage, Text).contains(digest)
            )
        ),
    ]
    return any(s.scalars(query.limit(1)).first() is not None for query in checks)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
