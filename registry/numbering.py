"""Handing out gap-free version numbers: the counter row, the version row and its event.

The per-model counter row is upserted in the same transaction as the version row, so its row
lock serializes registrations of one model until commit and a rollback takes the number back.
On PostgreSQL the three writes go in one statement (data-modifying CTEs), so the lock is held
for a single round trip plus the commit; that is what lets many writers register quickly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, String, Table, bindparam, func, insert, literal, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from registry.schema import EventRow, ModelRow, ModelVersionRow, UTCDateTime

__all__ = ["NewVersion", "allocate_version"]

_MODELS = cast(Table, ModelRow.__table__)
_VERSIONS = cast(Table, ModelVersionRow.__table__)
_EVENTS = cast(Table, EventRow.__table__)


@dataclass(frozen=True)
class NewVersion:
    """What one registration wrote."""

    model: str
    digest: str
    status: str
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    reason: str
    actor: str
    payload: dict[str, Any]
    created_at: datetime


def allocate_version(s: Session, new: NewVersion) -> tuple[int, int]:
    """Write the counter, version and ``model.registered`` event; (version, event id)."""
    if s.get_bind().dialect.name == "postgresql":
        return _allocate_postgresql(s, new)
    return _allocate_stepwise(s, new)


def _counter_upsert(new: NewVersion) -> Any:
    return (
        sqlite.insert(_MODELS)
        .values(name=new.model, last_version=1, created_at=new.created_at)
        .on_conflict_do_update(
            index_elements=["name"], set_={"last_version": _MODELS.c.last_version + 1}
        )
        .returning(_MODELS.c.last_version)
    )


def _postgresql_statement() -> Any:
    """The one-statement registration, built once with named parameters."""
    counter = (
        postgresql.insert(_MODELS)
        .values(name=bindparam("model"), last_version=1, created_at=bindparam("created_at"))
        .on_conflict_do_update(
            index_elements=["name"], set_={"last_version": _MODELS.c.last_version + 1}
        )
        .returning(_MODELS.c.last_version)
        .cte("counter")
    )
    number = counter.c.last_version
    model = bindparam("model", type_=String())
    created_at = bindparam("created_at", type_=UTCDateTime())
    versions = insert(_VERSIONS).from_select(
        ["model", "version", "bundle_digest", "status", "metrics", "lineage", "created_at"],
        select(
            model,
            number,
            bindparam("digest", type_=String()),
            bindparam("status", type_=String()),
            bindparam("metrics", type_=JSON()),
            bindparam("lineage", type_=JSON()),
            created_at,
        ).select_from(counter),
    )
    event = (
        insert(_EVENTS)
        .from_select(
            ["kind", "model", "versions", "reason", "actor", "payload", "created_at"],
            select(
                literal("model.registered"),
                model,
                func.json_build_array(number),
                bindparam("reason", type_=String()),
                bindparam("actor", type_=String()),
                bindparam("payload", type_=JSON()),
                created_at,
            ).select_from(counter),
        )
        .returning(_EVENTS.c.id)
        .cte("event")
    )
    return (
        select(number, event.c.id)
        .select_from(counter.join(event, true()))
        .add_cte(versions.cte("version_row"))
    )


_POSTGRESQL_STATEMENT = _postgresql_statement()


def _allocate_postgresql(s: Session, new: NewVersion) -> tuple[int, int]:
    params = {
        "model": new.model,
        "created_at": new.created_at,
        "digest": new.digest,
        "status": new.status,
        "metrics": new.metrics,
        "lineage": new.lineage,
        "reason": new.reason,
        "actor": new.actor,
        "payload": new.payload,
    }
    version, event_id = s.execute(_POSTGRESQL_STATEMENT, params).one()
    return int(version), int(event_id)


def _allocate_stepwise(s: Session, new: NewVersion) -> tuple[int, int]:
    # SQLite has no data-modifying CTEs; BEGIN IMMEDIATE already serializes its writers.
    version = int(s.execute(_counter_upsert(new)).scalar_one())
    s.execute(
        insert(_VERSIONS).values(
            model=new.model,
            version=version,
            bundle_digest=new.digest,
            status=new.status,
            metrics=new.metrics,
            lineage=new.lineage,
            created_at=new.created_at,
        )
    )
    event_id = s.execute(
        insert(_EVENTS)
        .values(
            kind="model.registered",
            model=new.model,
            versions=[version],
            reason=new.reason,
            actor=new.actor,
            payload=new.payload,
            created_at=new.created_at,
        )
        .returning(_EVENTS.c.id)
    ).scalar_one()
    return version, int(event_id)
