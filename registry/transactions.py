"""The catalog's transaction plumbing: read and write transactions, retries, row conversion."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from registry.database import retrying, unavailable
from registry.errors import BlobNotFoundError, ConfigError, NotFoundError
from registry.hashing import parse_digest
from registry.records import (
    AlertRecord,
    ArtifactRecord,
    DatasetRecord,
    EventRecord,
    ModelVersionRecord,
)
from registry.schema import (
    AlertRow,
    ArtifactRow,
    BlobRow,
    DatasetRow,
    EventRow,
    ModelVersionRow,
    utcnow,
)

__all__ = [
    "CatalogBase",
    "alert_record",
    "artifact_record",
    "check_name",
    "dataset_record",
    "event_record",
    "no_blob",
    "read_metrics",
    "version_record",
]

T = TypeVar("T")


class CatalogBase:
    """Runs each catalog operation as one short transaction, retried when it loses a lock."""

    def __init__(self, engine: Engine, database_url: str) -> None:
        self.engine = engine
        self.database_url = database_url
        self.dialect = engine.dialect.name
        # The time rows are stamped with (events, aliases, alerts). A simulation that runs
        # weeks on a manual clock sets it, so the log tells its time, not the machine's.
        self.clock: Callable[[], datetime] = utcnow

    def _run(self, fn: Callable[[Session], T], *, write: bool, one_statement: bool = False) -> T:
        """Run ``fn`` in one transaction, again if it loses a lock race.

        ``one_statement`` promises ``fn`` issues a single statement: PostgreSQL then runs it in
        autocommit, which is still atomic but saves the BEGIN and COMMIT round trips (and the
        time row locks are held)."""

        def attempt() -> T:
            with self.engine.connect() as conn:
                conn.execution_options(catalog_write=write)
                if one_statement and self.dialect == "postgresql":
                    conn.execution_options(isolation_level="AUTOCOMMIT")
                with Session(bind=conn, expire_on_commit=False, autoflush=True) as session:
                    result = fn(session)
                    if write:
                        session.commit()
                    # Reads end by closing the session: its rows stay loaded, detached.
                    return result

        try:
            return retrying(attempt, url=self.database_url)
        except IntegrityError:
            raise
        except DataError as exc:
            detail = str(exc.orig).strip().splitlines()[0]
            raise ConfigError(
                f"the registry database refused a value ({detail}): shorten or fix it"
            ) from exc
        except DBAPIError as exc:
            raise unavailable(exc, self.database_url) from exc

    def _read(self, fn: Callable[[Session], T]) -> T:
        return self._run(fn, write=False)

    def _write(self, fn: Callable[[Session], T]) -> T:
        return self._run(fn, write=True)

    def _insert(self, mapped: Any) -> postgresql.Insert | sqlite.Insert:
        """A Core INSERT into ``mapped``'s table supporting ``on_conflict_do_nothing``.

        Core, not ORM-enabled, so that ``rowcount`` tells whether a row went in."""
        table = mapped.__table__
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _version_row(
        self, s: Session, model: str, version: int, *, lock: bool = True
    ) -> ModelVersionRow:
        """The row of one version (locked for update on PostgreSQL), or NotFoundError."""
        where = (ModelVersionRow.model == model) & (ModelVersionRow.version == version)
        query = select(ModelVersionRow).where(where)
        if lock and self.dialect == "postgresql":
            query = query.with_for_update()
        row = s.scalars(query).first()
        if row is None:
            raise NotFoundError(
                f"model {model!r} has no version {version}: see `retrain models ls`"
            )
        return row

    @staticmethod
    def _require_blob(s: Session, digest: str) -> str:
        digest = parse_digest(digest)
        if s.get(BlobRow, digest) is None:
            raise no_blob(digest)
        return digest

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()


def check_name(kind: str, value: str, *, longest: int = 200) -> str:
    """``value`` if it is usable as a model, dataset or alias name; ConfigError otherwise."""
    if not value or len(value) > longest or value != value.strip():
        raise ConfigError(
            f"{kind} name {value!r} must be 1-{longest} characters without outer spaces"
        )
    return value


def no_blob(digest: str) -> BlobNotFoundError:
    """The error for a row that would reference a blob the catalog does not know."""
    return BlobNotFoundError(
        f"no blob {digest} in the catalog: store the bytes with Registry.put_bytes or "
        "`retrain registry put` first"
    )


def read_metrics(stored: Mapping[str, Any]) -> dict[str, float]:
    """Metrics as stored (JSON has no NaN: null stands for it) back as floats."""
    return {k: float("nan") if v is None else float(v) for k, v in stored.items()}


def version_record(row: ModelVersionRow) -> ModelVersionRecord:
    return ModelVersionRecord(
        model=row.model,
        version=row.version,
        bundle_digest=row.bundle_digest,
        status=row.status,
        metrics=read_metrics(row.metrics),
        lineage=dict(row.lineage),
        created_at=row.created_at,
    )


def dataset_record(row: DatasetRow) -> DatasetRecord:
    return DatasetRecord(
        name=row.name,
        digest=row.digest,
        rows=row.rows,
        schema={str(k): str(v) for k, v in row.schema_.items()},
        created_at=row.created_at,
    )


def event_record(row: EventRow) -> EventRecord:
    return EventRecord(
        id=row.id,
        kind=row.kind,
        model=row.model,
        versions=[int(v) for v in row.versions],
        reason=row.reason,
        actor=row.actor,
        payload=dict(row.payload),
        created_at=row.created_at,
    )


def artifact_record(row: ArtifactRow) -> ArtifactRecord:
    return ArtifactRecord(
        id=row.id,
        kind=row.kind,
        name=row.name,
        digest=row.digest,
        meta=dict(row.meta),
        created_at=row.created_at,
    )


def alert_record(row: AlertRow) -> AlertRecord:
    return AlertRecord(
        id=row.id,
        dedup_key=row.dedup_key,
        source=row.source,
        model=row.model,
        status=row.status,
        payload=dict(row.payload),
        state=row.state,
        flow_run_id=row.flow_run_id,
        received_at=row.received_at,
        reason=row.reason,
        action=row.action,
    )
