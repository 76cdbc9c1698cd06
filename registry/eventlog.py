"""The append-only event log: what happened, to which versions, why, by whom, when."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from registry.database import jsonable
from registry.records import EventRecord
from registry.schema import EventRow
from registry.transactions import CatalogBase, event_record

__all__ = ["EventLogMixin"]

_EVENTS = cast(Table, EventRow.__table__)


class EventLogMixin(CatalogBase):
    """Appending to and reading the event log (the database refuses edits and deletions)."""

    def _append(
        self,
        s: Session,
        kind: str,
        model: str | None,
        versions: Iterable[int],
        reason: str,
        actor: str,
        payload: Mapping[str, Any] | None,
    ) -> EventRecord:
        listed = [int(v) for v in versions]
        stored = jsonable(dict(payload or {}))
        now = self.clock()
        event_id = s.execute(
            insert(_EVENTS)
            .values(
                kind=kind,
                model=model,
                versions=listed,
                reason=reason,
                actor=actor,
                payload=stored,
                created_at=now,
            )
            .returning(_EVENTS.c.id)
        ).scalar_one()
        return EventRecord(event_id, kind, model, listed, reason, actor, stored, now)

    def append_event(
        self,
        kind: str,
        *,
        model: str | None = None,
        versions: Iterable[int] = (),
        reason: str = "",
        actor: str = "system",
        payload: Mapping[str, Any] | None = None,
    ) -> EventRecord:
        """Append one entry to the event log."""
        listed = list(versions)
        return self._run(
            lambda s: self._append(s, kind, model, listed, reason, actor, payload),
            write=True,
            one_statement=True,
        )

    def events(
        self,
        model: str | None = None,
        *,
        kinds: Iterable[str] | None = None,
        since_id: int | None = None,
        limit: int | None = None,
    ) -> list[EventRecord]:
        """Events oldest first. With ``since_id`` the first ``limit`` after it (paging);
        without, the latest ``limit`` (a tail).

        Ids follow insertion, not commit: with several writers at once on PostgreSQL an event
        may become visible after one with a higher id, so a poller that must see every event
        should re-read a short overlap behind its last id."""
        query = select(EventRow)
        if model is not None:
            query = query.where(EventRow.model == model)
        if kinds is not None:
            query = query.where(EventRow.kind.in_(list(kinds)))
        if since_id is not None:
            query = query.where(EventRow.id > since_id)
        tail = since_id is None and limit is not None
        query = query.order_by(EventRow.id.desc() if tail else EventRow.id)
        if limit is not None:
            query = query.limit(limit)
        rows = list(self._read(lambda s: s.scalars(query).all()))
        if tail:
            rows.reverse()
        return [event_record(row) for row in rows]
