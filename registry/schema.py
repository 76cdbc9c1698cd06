"""The catalog's tables as SQLAlchemy 2 typed ORM classes (the Alembic migrations mirror them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AlertRow",
    "AliasRow",
    "ArtifactRow",
    "Base",
    "BlobRow",
    "DatasetRow",
    "EventRow",
    "ModelRow",
    "ModelVersionRow",
    "UTCDateTime",
    "utcnow",
]

# SQLite only auto-increments INTEGER PRIMARY KEY columns; PostgreSQL gets 64-bit ids.
_Id = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass a UTC-aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the catalog tables."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[int]: JSON(),
    }


class BlobRow(Base):
    """A stored blob; every other digest column points here."""

    __tablename__ = "blobs"
    digest: Mapped[str] = mapped_column(String(71), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, index=True)
    media_type: Mapped[str] = mapped_column(String(255))
    store_checksum: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]


class ModelRow(Base):
    """A model name and the last version number handed out (the gap-free counter)."""

    __tablename__ = "models"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    last_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]


class ModelVersionRow(Base):
    """One version of a model."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model", "version", name="uq_model_versions_model_version"),)
    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(200), ForeignKey("models.name"))
    version: Mapped[int] = mapped_column(Integer)
    bundle_digest: Mapped[str] = mapped_column(String(71), ForeignKey("blobs.digest"))
    status: Mapped[str] = mapped_column(String(32))
    metrics: Mapped[dict[str, Any]]
    lineage: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class AliasRow(Base):
    """A named pointer (``champion``, ``canary``) at one version of a model."""

    __tablename__ = "aliases"
    __table_args__ = (
        ForeignKeyConstraint(
            ["model", "version"], ["model_versions.model", "model_versions.version"]
        ),
    )
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class DatasetRow(Base):
    """A dataset snapshot."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("name", "digest", name="uq_datasets_name_digest"),)
    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    digest: Mapped[str] = mapped_column(String(71), ForeignKey("blobs.digest"), index=True)
    rows: Mapped[int] = mapped_column(BigInteger)
    schema_: Mapped[dict[str, Any]] = mapped_column("schema")
    created_at: Mapped[datetime]


class EventRow(Base):
    """One entry of the append-only event log (triggers refuse updates and deletes)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_model_id", "model", "id"),)
    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    model: Mapped[str | None] = mapped_column(String(200))
    versions: Mapped[list[int]]
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class ArtifactRow(Base):
    """A stored report or spec."""

    __tablename__ = "artifacts"
    __table_args__ = (Index("ix_artifacts_kind_name_id", "kind", "name", "id"),)
    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    digest: Mapped[str] = mapped_column(String(71), ForeignKey("blobs.digest"), index=True)
    meta: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class AlertRow(Base):
    """An alert in the inbox; ``dedup_key`` is unique so a resent alert is recorded once."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_state_received", "state", "received_at"),)
    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(String(255), unique=True)
    source: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(32))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    reason: Mapped[str | None] = mapped_column(String(200))  # why folded or ignored
    action: Mapped[str] = mapped_column(String(16), server_default="retrain")  # or rollback
