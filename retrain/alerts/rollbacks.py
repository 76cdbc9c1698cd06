"""Alerts that roll back: decided at once, done in the receiver's process, once per incident.

A firing alert that asks for ``rollback`` (see ``retrain.alerts.payloads``) is never folded
into a cooldown: the champion it was raised against goes back to the previous good champion
now, through the launcher's ``start_rollback``. ``DirectRollbacks`` does it with the function
``retrain rollback`` and the ``rollback-model`` flow use (``tasks.release.rollback.rollback``):
catalog writes only, milliseconds, whether or not Prefect is up. The registry event
``model.rolled_back`` records it (actor ``alert-receiver``, the alert's reason, and the
idempotency key of the incident); then, best effort on a thread of its own, a Prefect event
``ml.model.rolled-back`` (resource ``ml.model.<model>``) shows it in the Prefect UI's event
feed when a Prefect API is configured.

``RollbackDecider`` takes the decision the dispatcher records in the inbox:

- ``duplicate``: this incident was rolled back already (the same alert delivered by another
  group or route, a retry after a crash): the event log holds its idempotency key;
- ``ignored``: the champion changed after the incident started (the alert is about a version
  no longer serving), or there is nothing to roll back to (no earlier good champion);
- ``rolled_back``: done, with ``vN -> vM`` as the reason.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from registry.errors import ConfigError, LaunchError, RetrainError
from registry.release import CHAMPION_ALIAS
from tasks.release.rollback import rollback

if TYPE_CHECKING:
    from registry.records import AlertRecord, EventRecord
    from registry.store import Registry
    from retrain.alerts.launchers import RollbackLauncher

__all__ = ["ACTOR", "PREFECT_EVENT", "DirectRollbacks", "RollbackDecider", "emit_prefect_event"]

log = logging.getLogger(__name__)
ACTOR = "alert-receiver"
PREFECT_EVENT = "ml.model.rolled-back"
_ROLLED_BACK = "model.rolled_back"
_LOOKBACK = 200  # champion changes and rollbacks read back per decision


class DirectRollbacks:
    """Rollbacks done here and now in ``registry`` (``tasks.release.rollback.rollback``)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def start_rollback(self, model: str, *, idempotency_key: str, reason: str) -> str:
        """Move ``model``'s champion back; ``vN -> vM`` (or the canary dropped). ConfigError
        when there is nothing to roll back to; LaunchError when the registry cannot be written
        (the alert stays undecided and is offered again)."""
        extra = {"idempotency_key": idempotency_key}
        try:
            result = rollback(self._registry, model, reason=reason, actor=ACTOR, extra=extra)
        except ConfigError:
            raise
        except RetrainError as exc:
            raise LaunchError(f"could not roll back {model}: {exc}") from exc
        if result.to_version == result.from_version:
            done = f"canary v{result.canary_dropped} dropped, champion v{result.to_version} kept"
        else:
            done = f"v{result.from_version} -> v{result.to_version}"
        emit_prefect_event(model, done, reason, idempotency_key)
        return done


def emit_prefect_event(model: str, done: str, reason: str, key: str) -> None:
    """Send ``ml.model.rolled-back`` to the Prefect API, if one is configured, on a daemon
    thread: whatever Prefect does (slow, down, absent), the rollback neither waits nor fails."""

    def send() -> None:
        try:
            from prefect.events import emit_event
            from prefect.settings import get_current_settings

            if not get_current_settings().api.url:
                return
            emit_event(
                PREFECT_EVENT,
                resource={"prefect.resource.id": f"ml.model.{model}", "model": model},
                payload={"rollback": done, "reason": reason, "idempotency_key": key},
            )
        except Exception:  # best effort: the registry event log is the record
            log.debug("Prefect event for the rollback of %s not sent", model, exc_info=True)

    threading.Thread(target=send, name="rollback-event", daemon=True).start()


class RollbackDecider:
    """Decides rollback alerts for the dispatcher; each decision is written at once."""

    def __init__(self, registry: Registry, launcher: RollbackLauncher) -> None:
        self._registry = registry
        self._launcher = launcher
        self._done: dict[str, str] = {}  # idempotency key: what it did (this process)

    def decide(self, alert: AlertRecord) -> tuple[str, str]:
        """``(state, reason)`` for a firing rollback alert of a registered model; the rollback
        is done when the state is ``rolled_back``. LaunchError: undecided, retry later."""
        model = alert.model
        key = idempotency_key(alert)
        if key in self._done:
            return "duplicate", f"incident already rolled back: {self._done[key]}"
        events = self._registry.catalog.events(
            model, kinds=["alias.set", _ROLLED_BACK], limit=_LOOKBACK
        )
        earlier = next(
            (e for e in reversed(events) if e.payload.get("idempotency_key") == key), None
        )
        if earlier is not None:
            done = f"v{earlier.payload.get('from')} -> v{earlier.payload.get('to')}"
            self._done[key] = done
            return "duplicate", f"incident already rolled back: {done}"
        changed = _champion_changed_at(events)
        started = incident_start(alert)
        if changed is not None and started is not None and changed > started:
            champion = self._registry.catalog.get_alias(model, CHAMPION_ALIAS)
            return "ignored", f"champion changed to v{champion} after the alert started"
        try:
            done = self._launcher.start_rollback(
                model, idempotency_key=key, reason=alert_reason(alert)
            )
        except ConfigError as exc:
            return "ignored", f"nothing to roll back to: {exc}"
        self._done[key] = done
        log.warning("alert %s from %s rolled %s back: %s", alert.id, alert.source, model, done)
        return "rolled_back", done


def idempotency_key(alert: AlertRecord) -> str:
    """``rollback-<model>-<incident>``: the same for every delivery of one incident."""
    incident = str(alert.payload.get("incident") or alert.dedup_key)
    return f"rollback-{alert.model}-{hashlib.sha256(incident.encode()).hexdigest()[:24]}"


def incident_start(alert: AlertRecord) -> datetime | None:
    """When the incident began: the latest ``startsAt`` of the firing alerts of a webhook
    group (a newer alert in a group is a newer incident), else the time of receipt."""
    starts: list[datetime] = []
    for item in alert.payload.get("alerts") or []:
        if isinstance(item, dict) and item.get("status") == "firing" and item.get("startsAt"):
            try:
                starts.append(datetime.fromisoformat(str(item["startsAt"])))
            except ValueError:
                continue
    aware = [s for s in starts if s.tzinfo is not None and s.year > 1]
    return max(aware) if aware else alert.received_at


def alert_reason(alert: AlertRecord) -> str:
    """What the rollback records as its reason: the route, the alert id and what it said."""
    said = ""
    if isinstance(alert.payload.get("reason"), str):
        said = alert.payload["reason"]
    for item in alert.payload.get("alerts") or []:
        if isinstance(item, dict) and item.get("status") == "firing":
            said = _webhook_summary(item)
            break
    said = " ".join(said.split())[:160]
    return f"{alert.source} alert {alert.id}" + (f": {said}" if said else "")


def _webhook_summary(item: dict[str, Any]) -> str:
    labels = item.get("labels") or {}
    annotations = item.get("annotations") or {}
    name = str(labels.get("alertname", "")) if isinstance(labels, dict) else ""
    summary = str(annotations.get("summary", "")) if isinstance(annotations, dict) else ""
    return f"{name}: {summary}" if name and summary else name or summary


def _champion_changed_at(events: list[EventRecord]) -> datetime | None:
    for event in reversed(events):
        if event.kind == "alias.set" and event.payload.get("alias") == CHAMPION_ALIAS:
            return event.created_at
    return None
