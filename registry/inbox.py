"""Catalog tables beside the model registry proper: stored artifacts and the alert inbox."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from registry.database import jsonable
from registry.errors import ConfigError, NotFoundError
from registry.records import ALERT_ACTIONS, ALERT_STATES, AlertRecord, ArtifactRecord
from registry.schema import AlertRow, ArtifactRow
from registry.transactions import CatalogBase, alert_record, artifact_record, check_name

__all__ = ["InboxMixin", "NewAlert"]

# What the drivers refuse only mid-transaction: NUL (PostgreSQL) and lone surrogates (both).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class NewAlert(NamedTuple):
    """An alert to file in the inbox (``add_alerts``)."""

    dedup_key: str
    source: str
    model: str
    status: str
    payload: Mapping[str, Any]
    action: str = "retrain"  # or "rollback"


class InboxMixin(CatalogBase):
    """Artifacts (reports, specs, cards) and deduplicated alerts."""

    # -- artifacts ---------------------------------------------------------------------------
    def register_artifact(
        self, kind: str, name: str, digest: str, *, meta: Mapping[str, Any] | None = None
    ) -> ArtifactRecord:
        """Record a stored report or spec; the newest row per (kind, name) is the latest."""
        if not kind or not name:
            raise ConfigError("an artifact needs a non-empty kind and name")

        def op(s: Session) -> ArtifactRow:
            row = ArtifactRow(
                kind=kind,
                name=name,
                digest=self._require_blob(s, digest),
                meta=jsonable(dict(meta or {})),
                created_at=self.clock(),
            )
            s.add(row)
            s.flush()
            return row

        return artifact_record(self._write(op))

    def artifacts(self, kind: str | None = None, name: str | None = None) -> list[ArtifactRecord]:
        """Artifacts, oldest first, optionally of one kind and/or name."""
        query = select(ArtifactRow).order_by(ArtifactRow.id)
        if kind is not None:
            query = query.where(ArtifactRow.kind == kind)
        if name is not None:
            query = query.where(ArtifactRow.name == name)
        return [artifact_record(row) for row in self._read(lambda s: s.scalars(query).all())]

    def latest_artifact(self, kind: str, name: str) -> ArtifactRecord | None:
        """The newest artifact of ``kind`` named ``name``."""
        query = (
            select(ArtifactRow)
            .where(ArtifactRow.kind == kind, ArtifactRow.name == name)
            .order_by(ArtifactRow.id.desc())
            .limit(1)
        )
        row = self._read(lambda s: s.scalars(query).first())
        return None if row is None else artifact_record(row)

    # -- alerts ------------------------------------------------------------------------------
    def add_alert(
        self,
        dedup_key: str,
        *,
        source: str,
        model: str,
        status: str,
        payload: Mapping[str, Any],
    ) -> tuple[AlertRecord, bool]:
        """File an alert once per ``dedup_key``; the flag says whether it is new."""
        return self.add_alerts([NewAlert(dedup_key, source, model, status, payload)])[0]

    def add_alerts(self, alerts: Sequence[NewAlert]) -> list[tuple[AlertRecord, bool]]:
        """File alerts once per dedup key, all in one transaction: every one of them or, on
        any error, none (a retry then finds nothing half-stored). Each flag says "new"."""
        rows = [_checked_alert(alert) for alert in alerts]  # refused before any write

        def op(s: Session) -> list[tuple[AlertRow, bool]]:
            now = self.clock()
            return [self._file_alert(s, row, now) for row in rows]

        return [(alert_record(row), created) for row, created in self._write(op)]

    def _file_alert(
        self, s: Session, values: dict[str, Any], now: datetime
    ) -> tuple[AlertRow, bool]:
        # One round trip for a new alert (RETURNING); a duplicate costs a second SELECT.
        inserted = s.execute(
            self._insert(AlertRow)
            .values(**values, state="received", flow_run_id=None, received_at=now, updated_at=now)
            .on_conflict_do_nothing()
            .returning(*AlertRow.__table__.c)
        ).one_or_none()
        if inserted is not None:
            # A Core row has the mapped attributes alert_record reads.
            return cast(AlertRow, inserted), True
        key = values["dedup_key"]
        return s.scalars(select(AlertRow).where(AlertRow.dedup_key == key)).one(), False

    def pending_alerts(self, *, older_than_s: float = 0) -> list[AlertRecord]:
        """Alerts still ``received`` that arrived at least ``older_than_s`` seconds ago."""
        cutoff = self.clock() - timedelta(seconds=older_than_s)
        query = (
            select(AlertRow)
            .where(AlertRow.state == "received", AlertRow.received_at <= cutoff)
            .order_by(AlertRow.id)
        )
        return [alert_record(row) for row in self._read(lambda s: s.scalars(query).all())]

    def mark_alert(
        self,
        alert_id: int,
        state: str,
        *,
        flow_run_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Move an alert to ``state`` (received, submitted, folded, ignored, rolled_back,
        duplicate), recording why (``reason``, at most 200 characters kept) when given."""
        if state not in ALERT_STATES:
            known = ", ".join(ALERT_STATES)
            raise ConfigError(f"unknown alert state {state!r}: use one of {known}")
        values: dict[str, Any] = {"state": state, "updated_at": self.clock()}
        if flow_run_id is not None:
            values["flow_run_id"] = flow_run_id
        if reason is not None:
            values["reason"] = _UNSTORABLE.sub("?", reason)[:200]

        def op(s: Session) -> int:
            stmt = update(AlertRow).where(AlertRow.id == alert_id).values(**values)
            return cast(CursorResult[Any], s.execute(stmt)).rowcount

        if self._write(op) != 1:
            raise NotFoundError(f"no alert with id {alert_id}")

    def recent_alerts(self, *, model: str | None = None, limit: int = 50) -> list[AlertRecord]:
        """The ``limit`` most recently received alerts, newest first, optionally of one model."""
        query = select(AlertRow).order_by(AlertRow.id.desc()).limit(max(0, limit))
        if model is not None:
            query = query.where(AlertRow.model == model)
        return [alert_record(row) for row in self._read(lambda s: s.scalars(query).all())]

    def prune_alerts(self, older_than: datetime) -> int:
        """Delete decided alerts received before ``older_than``; how many. Rows still
        ``received`` are never pruned: they wait for a decision, however old. A pruned alert's
        dedup key is free again, so the same key arriving later is a new alert."""

        def op(s: Session) -> int:
            stmt = delete(AlertRow).where(
                AlertRow.state != "received", AlertRow.received_at < older_than
            )
            return cast(CursorResult[Any], s.execute(stmt)).rowcount

        return self._write(op)


def _checked_alert(alert: NewAlert) -> dict[str, Any]:
    """``alert``'s column values, or ConfigError for one the database would refuse."""
    if not alert.dedup_key or len(alert.dedup_key) > 255:
        raise ConfigError("an alert's dedup key must be 1-255 characters")
    check_name("model", alert.model)
    if alert.action not in ALERT_ACTIONS:
        raise ConfigError(f"unknown alert action {alert.action!r}: use one of {ALERT_ACTIONS}")
    for name, longest in (("dedup_key", 255), ("source", 200), ("model", 200), ("status", 64)):
        value: str = getattr(alert, name)
        if len(value) > longest:  # the column's width (PostgreSQL refuses, SQLite would not)
            raise ConfigError(f"an alert's {name} must be at most {longest} characters")
        if _UNSTORABLE.search(value):
            raise ConfigError(
                f"an alert's {name} holds a NUL character or a lone surrogate: send plain text"
            )
    return {
        "dedup_key": alert.dedup_key,
        "source": alert.source,
        "model": alert.model,
        "status": alert.status,
        "payload": jsonable(dict(alert.payload)),
        "action": alert.action,
    }
