"""What each alert source sends, turned into one ``AlertSignal`` per model.

Sources and how an alert names its model and is deduplicated:

- ``alertmanager``: Prometheus Alertmanager webhook, version 4. The model is the ``model``
  label of each alert (``retrain_model`` and ``ml_model`` are accepted too); alerts of one
  notification are grouped per model. Dedup key: groupKey + status + model + each alert's
  incident (its fingerprint with its ``startsAt``), so Alertmanager's repeat notifications of
  an unchanged group are stored once, while the same alert firing again later (a new
  ``startsAt``) is a new incident.
- ``grafana``: Grafana unified-alerting webhook (the same shape, version 1).
- ``evidently``: a small JSON document a monitoring job posts after an Evidently report:
  ``{"model": ..., "drift_share": 0.4, "drifted_columns": [...], "report_id": ...}``.
  Dedup key: ``report_id`` when given, else the body's hash.
- ``generic``: ``{"model": ..., "status": "firing"|"resolved", "reason": ..., "dedup_key": ...,
  "action": "retrain"|"rollback"}``.
  Dedup key: the sender's ``dedup_key`` when given, else model + status + the UTC hour of
  receipt (``now``), so a repeat within the hour is stored once and one later is a new incident.

Each alert asks for an action: ``retrain`` (the default) or ``rollback``. Alertmanager and
Grafana alerts say so with an ``action`` label (or annotation), the generic route with an
``"action"`` field; Evidently reports always ask for a retrain. A rollback signal's dedup key
also names its action, and its payload carries its ``incident`` (Alertmanager/Grafana: the
model with each alert's fingerprint and ``startsAt``, whatever group or route delivered it;
generic: the dedup key), so the same incident never rolls back twice.

Nothing here does I/O. A body that cannot be taken whole raises ``AlertPayloadError`` (a 4xx)
and nothing of it is stored: not JSON, too deep, odd numbers, NUL or lone surrogates anywhere
(``retrain.alerts.bodies``), more than ``MAX_ALERTS`` alerts (413), a label over
``MAX_LABEL_CHARS`` or an annotation over ``MAX_ANNOTATION_CHARS`` characters, or any other
wrong shape (422 naming the field). One exception, inside an otherwise sound Alertmanager or
Grafana group: an alert whose model label breaks the model-name rule, or whose ``action`` is
neither ``retrain`` nor ``rollback``, is left out and reported in ``ParsedAlerts.invalid`` (the
rest of the group is stored), as an unknown model would be; the label itself is never stored
or echoed.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from registry.errors import AlertPayloadError
from registry.records import ALERT_ACTIONS
from retrain.alerts.bodies import read_json_object
from retrain.config.spec_yaml import MODEL_NAME_PATTERN, describe_first_error

__all__ = [
    "ACTIONS",
    "MAX_ALERTS",
    "MAX_ANNOTATION_CHARS",
    "MAX_LABEL_CHARS",
    "SOURCES",
    "AlertSignal",
    "ParsedAlerts",
    "parse_alerts",
]

MAX_ALERTS = 1000  # per body; Alertmanager's webhook_config `max_alerts` keeps a group below it
MAX_LABEL_CHARS = 1024
MAX_ANNOTATION_CHARS = 8192
MODEL_RULE = (
    "lowercase letters, digits and '-', 2-48 characters, a letter first and no '-' last "
    "(e.g. loan-default)"
)
Status = Literal["firing", "resolved"]
Action = Literal["retrain", "rollback"]
ACTIONS = ALERT_ACTIONS
_MODEL_LABELS = ("model", "retrain_model", "ml_model")
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
_Doc = TypeVar("_Doc", bound=BaseModel)
_GENERIC_WINDOW_S = 3600  # a generic alert without a dedup_key: one incident per hour


def _model_name(value: str) -> str:
    # A message of our own: pydantic's pattern error would echo the value back to the sender.
    if not _MODEL_NAME.fullmatch(value):
        raise ValueError(f"not a model name; use {MODEL_RULE}")
    return value


ModelName = Annotated[str, AfterValidator(_model_name)]
Label = Annotated[str, StringConstraints(max_length=MAX_LABEL_CHARS)]
Labels = dict[Label, Label]
Annotations = dict[Label, Annotated[str, StringConstraints(max_length=MAX_ANNOTATION_CHARS)]]


@dataclass(frozen=True)
class AlertSignal:
    """One model's share of an incoming alert, ready for the inbox."""

    source: str
    model: str
    status: str
    dedup_key: str
    payload: dict[str, Any]
    action: str = "retrain"


@dataclass(frozen=True)
class ParsedAlerts:
    """What a body holds: the signals to store, and the alerts of a group left out (index and
    reason: a model label that breaks the model-name rule, never echoed)."""

    signals: list[AlertSignal]
    invalid: list[dict[str, Any]] = field(default_factory=list)


_Parser = Callable[[dict[str, Any], bytes, float], ParsedAlerts]


class _Open(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _WebhookAlert(_Open):
    status: Status
    labels: Labels = Field(default_factory=dict)
    annotations: Annotations = Field(default_factory=dict)
    fingerprint: str = Field(default="", max_length=MAX_LABEL_CHARS)
    startsAt: str | None = Field(default=None, max_length=64)


class _Webhook(_Open):
    """Alertmanager v4 and Grafana unified alerting share this shape."""

    version: str = Field(default="4", max_length=64)
    groupKey: str = Field(min_length=1, max_length=MAX_ANNOTATION_CHARS)
    status: Status
    receiver: str = Field(default="", max_length=MAX_LABEL_CHARS)
    alerts: list[_WebhookAlert] = Field(min_length=1, max_length=MAX_ALERTS)
    commonLabels: Labels = Field(default_factory=dict)


class _Evidently(_Open):
    model: ModelName
    status: Status = "firing"
    drift_share: float | None = Field(default=None, ge=0.0, le=1.0)
    drifted_columns: list[Label] = Field(default_factory=list)
    dataset: Label | None = None
    report_id: str | None = Field(default=None, min_length=1, max_length=200)


class _Generic(_Open):
    model: ModelName
    status: Status = "firing"
    reason: str = Field(default="", max_length=2000)
    dedup_key: str | None = Field(default=None, min_length=1, max_length=200)
    labels: Labels = Field(default_factory=dict)
    action: Action = "retrain"


def parse_alerts(source: str, body: bytes, *, now: float | None = None) -> ParsedAlerts:
    """What ``body`` sent by ``source`` holds; ``AlertPayloadError`` (a 4xx) for a body that
    cannot be taken whole: nothing of it may be stored then. ``now`` (unix seconds, default the
    current time) is the time of receipt, which dates a generic alert without a dedup key."""
    parser = SOURCES.get(source)
    if parser is None:
        raise AlertPayloadError(f"unknown alert source {source!r}", status=404)
    return parser(read_json_object(body), body, time.time() if now is None else now)


def _validate(shape: type[_Doc], document: dict[str, Any]) -> _Doc:
    """``document`` read as ``shape``; the first mistake, naming its field, as a 422."""
    try:
        return shape.model_validate(document)
    except ValidationError as exc:
        raise AlertPayloadError(describe_first_error(exc, shape)) from exc


def _webhook(source: str) -> _Parser:
    def parse(document: dict[str, Any], body: bytes, now: float) -> ParsedAlerts:
        alerts = document.get("alerts")
        if isinstance(alerts, list) and len(alerts) > MAX_ALERTS:  # before validating them all
            raise AlertPayloadError(
                f"{len(alerts)} alerts in one body, more than {MAX_ALERTS}: set max_alerts: "
                f"{MAX_ALERTS} (or fewer) in the webhook configuration",
                status=413,
            )
        hook = _validate(_Webhook, document)
        per_model, invalid = _group_by_model(hook)
        if not per_model:
            first = f": {invalid[0]['error']}" if invalid else ""
            raise AlertPayloadError(f"no alert carries a `model` label naming the model{first}")
        signals = []
        for (model, action), group in sorted(per_model.items()):
            status = "firing" if any(a.status == "firing" for a in group) else "resolved"
            # An alert's incident: its fingerprint and when it started firing. A repeat
            # notification carries both unchanged; the alert firing again starts anew.
            incidents = sorted([a.fingerprint or _hash(a.labels), a.startsAt or ""] for a in group)
            payload: dict[str, Any] = {
                "groupKey": hook.groupKey,
                "receiver": hook.receiver,
                "alerts": [a.model_dump(exclude_none=True) for a in group],
            }
            if action == "retrain":  # the key retrains always had: stored inboxes stay valid
                key = _hash([hook.groupKey, status, incidents, model])
            else:
                key = _hash([hook.groupKey, status, incidents, model, action])
                payload["incident"] = _hash([model, action, incidents])  # whatever the group
            signal = AlertSignal(source, model, status, f"{source}:{key}", payload, action)
            signals.append(signal)
        return ParsedAlerts(signals, invalid)

    return parse


def _group_by_model(
    hook: _Webhook,
) -> tuple[dict[tuple[str, str], list[_WebhookAlert]], list[dict[str, Any]]]:
    """The group's alerts per model and action; alerts whose model label breaks the model-name
    rule, or whose action is unknown, are left out and reported (by index): like an unknown
    model they must not silence the rest."""
    per_model: dict[tuple[str, str], list[_WebhookAlert]] = {}
    invalid: list[dict[str, Any]] = []
    for index, alert in enumerate(hook.alerts):
        labels = {**hook.commonLabels, **alert.labels}
        name = next((k for k in _MODEL_LABELS if labels.get(k)), None)
        if name is None:
            continue
        if not _MODEL_NAME.fullmatch(labels[name]):
            where = f"alerts[{index}].labels" if name in alert.labels else "commonLabels"
            error = f"{where}.{name}: not a model name; use {MODEL_RULE}"
            invalid.append({"index": index, "error": error})
            continue
        action = (labels.get("action") or alert.annotations.get("action") or "retrain").strip()
        if action.lower() not in ACTIONS:
            error = f"alerts[{index}]: unknown action; use one of {', '.join(ACTIONS)}"
            invalid.append({"index": index, "error": error})
            continue
        per_model.setdefault((labels[name], action.lower()), []).append(alert)
    return per_model, invalid


def _evidently(document: dict[str, Any], body: bytes, now: float) -> ParsedAlerts:
    alert = _validate(_Evidently, document)
    key = alert.report_id or _hash_bytes(body)
    payload = alert.model_dump(exclude_none=True)
    signal = AlertSignal("evidently", alert.model, alert.status, f"evidently:{key}", payload)
    return ParsedAlerts([signal])


def _generic(document: dict[str, Any], body: bytes, now: float) -> ParsedAlerts:
    alert = _validate(_Generic, document)
    # Without the sender's key, one incident per model, status and hour of receipt.
    key = alert.dedup_key or _hash([alert.model, alert.status, int(now // _GENERIC_WINDOW_S)])
    payload = alert.model_dump(exclude_none=True)
    if alert.action != "retrain":  # a rollback's dedup key names its action too
        key = _hash([key, alert.action]) if alert.dedup_key is None else f"{alert.action}:{key}"
        payload["incident"] = f"generic:{key}"
    signal = AlertSignal(
        "generic", alert.model, alert.status, f"generic:{key}", payload, alert.action
    )
    return ParsedAlerts([signal])


SOURCES: dict[str, _Parser] = {
    "alertmanager": _webhook("alertmanager"),
    "grafana": _webhook("grafana"),
    "evidently": _evidently,
    "generic": _generic,
}


def _hash(value: Any) -> str:
    return _hash_bytes(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


def _hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
