"""The SQL catalog: blobs, datasets, model versions, aliases and the append-only event log.

Every method is one short transaction, retried when it loses a lock race, and returns frozen
records. Version numbers come from a per-model counter row updated in the same transaction as
the version row, so they are gap-free (a rolled-back registration takes its number back).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.aliases import AliasMixin
from registry.database import create_catalog_engine, ensure_schema, jsonable
from registry.errors import ConfigError, NotFoundError
from registry.hashing import parse_digest
from registry.inbox import InboxMixin
from registry.leftovers import GC_LOCK_KEY, LeftoversMixin
from registry.numbering import NewVersion, allocate_version
from registry.records import (
    MODEL_STATUSES,
    BlobRecord,
    DatasetRecord,
    ModelVersionRecord,
)
from registry.schema import (
    BlobRow,
    DatasetRow,
    ModelRow,
    ModelVersionRow,
)
from registry.transactions import (
    check_name,
    dataset_record,
    no_blob,
    read_metrics,
    version_record,
)

__all__ = ["GC_LOCK_KEY", "Catalog"]


def _metrics(values: Mapping[str, float]) -> dict[str, float | None]:
    # JSON has no NaN or infinity; they are stored as null and read back as NaN.
    return {str(k): (float(v) if math.isfinite(float(v)) else None) for k, v in values.items()}


class Catalog(AliasMixin, InboxMixin, LeftoversMixin):
    """The registry's SQL catalog on SQLite or PostgreSQL."""

    @classmethod
    def open(cls, database_url: str) -> Catalog:
        """Connect, and migrate the schema to the newest revision if needed."""
        engine = create_catalog_engine(database_url)
        ensure_schema(engine, database_url)
        return cls(engine, database_url)

    # -- blobs -------------------------------------------------------------------------------
    def record_blob(
        self,
        digest: str,
        size: int,
        media_type: str,
        *,
        store_checksum: str | None = None,
        still_stored: Callable[[], bool] | None = None,
    ) -> bool:
        """Add the row for a stored blob; False (and no row) if ``still_stored`` says it is gone.

        The check runs inside the transaction, which garbage collection cannot overlap, so a
        blob collected just before the row would have been written is noticed and re-put.
        """
        digest = parse_digest(digest)

        def op(s: Session) -> bool:
            if self.dialect == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": GC_LOCK_KEY})
            if still_stored is not None and not still_stored():
                return False
            s.execute(
                self._insert(BlobRow)
                .values(
                    digest=digest,
                    size=size,
                    media_type=media_type,
                    store_checksum=store_checksum,
                    created_at=self.clock(),
                )
                .on_conflict_do_nothing()
            )
            return True

        return self._write(op)

    def get_blob(self, digest: str) -> BlobRecord | None:
        """The catalog row of a blob, if any."""
        digest = parse_digest(digest)
        row = self._read(lambda s: s.get(BlobRow, digest))
        return None if row is None else _blob_record(row)

    def has_blob_of_size(self, size: int) -> bool:
        """Whether any catalogued blob is exactly ``size`` bytes long."""
        query = select(BlobRow.digest).where(BlobRow.size == size).limit(1)
        return self._read(lambda s: s.scalars(query).first()) is not None

    def list_blobs(self) -> list[BlobRecord]:
        """Every catalogued blob, oldest first."""
        rows = self._read(lambda s: s.scalars(select(BlobRow).order_by(BlobRow.created_at)).all())
        return [_blob_record(row) for row in rows]

    def collect_unreferenced(
        self, digests: Sequence[str], delete_blob: Callable[[str], None] | None
    ) -> list[str]:
        """Which of ``digests`` have no row; each is passed to ``delete_blob`` under the GC lock."""

        def op(s: Session) -> list[str]:
            if self.dialect == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": GC_LOCK_KEY})
            known = set(s.scalars(select(BlobRow.digest).where(BlobRow.digest.in_(digests))))
            orphans = [d for d in digests if d not in known]
            if delete_blob is not None:
                for digest in orphans:
                    delete_blob(digest)
            return orphans

        return self._run(op, write=delete_blob is not None)

    # -- datasets ----------------------------------------------------------------------------
    def register_dataset(
        self, name: str, digest: str, rows: int, schema: Mapping[str, str]
    ) -> DatasetRecord:
        """Record a dataset snapshot; registering the same (name, digest) again returns it."""
        name = check_name("dataset", name)

        def op(s: Session) -> DatasetRow:
            checked = self._require_blob(s, digest)
            s.execute(
                self._insert(DatasetRow)
                .values(
                    name=name,
                    digest=checked,
                    rows=int(rows),
                    schema={str(k): str(v) for k, v in schema.items()},
                    created_at=self.clock(),
                )
                .on_conflict_do_nothing()
            )
            where = (DatasetRow.name == name) & (DatasetRow.digest == checked)
            return s.scalars(select(DatasetRow).where(where)).one()

        return dataset_record(self._write(op))

    def get_dataset(self, digest: str) -> DatasetRecord:
        """The (first registered) dataset stored under ``digest``."""
        digest = parse_digest(digest)
        query = select(DatasetRow).where(DatasetRow.digest == digest).order_by(DatasetRow.id)
        row = self._read(lambda s: s.scalars(query.limit(1)).first())
        if row is None:
            raise NotFoundError(
                f"no dataset snapshot {digest}: list them with `retrain registry ls`"
            )
        return dataset_record(row)

    def latest_dataset(self, name: str) -> DatasetRecord | None:
        """The most recently registered snapshot of dataset ``name``."""
        query = select(DatasetRow).where(DatasetRow.name == name).order_by(DatasetRow.id.desc())
        row = self._read(lambda s: s.scalars(query.limit(1)).first())
        return None if row is None else dataset_record(row)

    # -- model versions ----------------------------------------------------------------------
    def register_model_version(
        self,
        model: str,
        bundle_digest: str,
        *,
        metrics: Mapping[str, float],
        lineage: Mapping[str, Any],
        status: str = "candidate",
        actor: str = "system",
        reason: str = "",
    ) -> ModelVersionRecord:
        """Record the next version of ``model`` (1, 2, 3, ... without gaps) and log it."""
        model = check_name("model", model)
        _check_status(status)

        digest = parse_digest(bundle_digest)
        stored_metrics = _metrics(metrics)
        stored_lineage = jsonable(dict(lineage))

        def op(s: Session) -> ModelVersionRecord:
            new = NewVersion(
                model,
                digest,
                status,
                stored_metrics,
                stored_lineage,
                reason,
                actor,
                {"status": status},
                self.clock(),
            )
            version, _ = allocate_version(s, new)
            metrics_read = read_metrics(stored_metrics)
            return ModelVersionRecord(
                model, version, digest, status, metrics_read, stored_lineage, new.created_at
            )

        try:
            return self._run(op, write=True, one_statement=True)
        except IntegrityError as exc:
            # The only reference that can be missing is the bundle's blob row.
            if self.get_blob(digest) is None:
                raise no_blob(digest) from exc
            raise

    def get_model_version(self, model: str, version: int) -> ModelVersionRecord:
        """One version of a model."""
        return version_record(
            self._read(lambda s: self._version_row(s, model, version, lock=False))
        )

    def list_model_versions(self, model: str) -> list[ModelVersionRecord]:
        """Every version of ``model``, oldest first."""
        query = (
            select(ModelVersionRow)
            .where(ModelVersionRow.model == model)
            .order_by(ModelVersionRow.version)
        )
        return [version_record(row) for row in self._read(lambda s: s.scalars(query).all())]

    def list_models(self) -> list[str]:
        """The names of all registered models, sorted."""
        query = select(ModelRow.name).order_by(ModelRow.name)
        return list(self._read(lambda s: s.scalars(query).all()))

    def set_status(self, model: str, version: int, status: str, *, reason: str, actor: str) -> None:
        """Change a version's status (candidate, rejected, champion, retired) and log it."""
        _check_status(status)

        def op(s: Session) -> None:
            row = self._version_row(s, model, version)
            previous, row.status = row.status, status
            payload = {"status": status, "previous": previous}
            self._append(s, "model.status", model, [version], reason, actor, payload)

        self._write(op)

    def update_metrics(self, model: str, version: int, metrics: Mapping[str, float]) -> None:
        """Merge ``metrics`` into a version's metrics."""

        def op(s: Session) -> None:
            row = self._version_row(s, model, version)
            row.metrics = {**row.metrics, **_metrics(metrics)}

        self._write(op)

    def update_lineage(self, model: str, version: int, facts: Mapping[str, Any]) -> None:
        """Merge run facts learnt after registration (e.g. ``cost``) into a version's lineage;
        a key already there is replaced."""
        stored = jsonable(dict(facts))

        def op(s: Session) -> None:
            row = self._version_row(s, model, version)
            row.lineage = {**row.lineage, **stored}

        self._write(op)


def _check_status(status: str) -> None:
    if status not in MODEL_STATUSES:
        raise ConfigError(f"unknown status {status!r}: use one of {', '.join(MODEL_STATUSES)}")


def _blob_record(row: BlobRow) -> BlobRecord:
    return BlobRecord(row.digest, row.size, row.media_type, row.created_at, row.store_checksum)
