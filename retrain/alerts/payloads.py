"""What each alert source sends, turned into one ``AlertSignal`` per model.

Sources and how an alert names its model and is deduplicated:

- ``alertmanager``: Prometheus Alertmanager webhook, version 4. The model is the ``model``
  label of each alert (``retrain_model`` and ``ml_model`` are accepted too); alerts of one
  notification are grouped per model. Dedup key: groupKey + status + sorted fingerprints, so
  Alertmanager's repeat notifications of an unchanged group are stored once.
- ``grafana``: Grafana unified-alerting webhook (the same shape, version 1).
- ``evidently``: a small JSON document a monitoring job posts after an Evidently report:
  ``{"model": ..., "drift_share": 0.4, "drifted_columns": [...], "report_id": ...}``.
  Dedup key: ``report_id`` when given, else the body's hash.
- ``generic``: ``{"model": ..., "status": "firing"|"resolved", "reason": ..., "dedup_key": ...}``.

Nothing here does I/O; a malformed document raises ``AlertPayloadError`` (a 4xx).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from registry.errors import AlertPayloadError
from retrain.config.spec_yaml import MODEL_NAME_PATTERN, describe_first_error

__all__ = ["SOURCES", "AlertSignal", "parse_alerts"]

Status = Literal["firing", "resolved"]
_MODEL_LABELS = ("model", "retrain_model", "ml_model")
_Doc = TypeVar("_Doc", bound=BaseModel)


@dataclass(frozen=True)
class AlertSignal:
    """One model's share of an incoming alert, ready for the inbox."""

    source: str
    model: str
    status: str
    dedup_key: str
    payload: dict[str, Any]


class _Open(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _WebhookAlert(_Open):
    status: Status
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    fingerprint: str = ""
    startsAt: str | None = None


class _Webhook(_Open):
    """Alertmanager v4 and Grafana unified alerting share this shape."""

    version: str = "4"
    groupKey: str = Field(min_length=1)
    status: Status
    receiver: str = ""
    alerts: list[_WebhookAlert] = Field(min_length=1)
    commonLabels: dict[str, str] = Field(default_factory=dict)


class _Evidently(_Open):
    model: str = Field(pattern=MODEL_NAME_PATTERN)
    status: Status = "firing"
    drift_share: float | None = Field(default=None, ge=0.0, le=1.0)
    drifted_columns: list[str] = Field(default_factory=list)
    dataset: str | None = None
    report_id: str | None = Field(default=None, min_length=1, max_length=200)


class _Generic(_Open):
    model: str = Field(pattern=MODEL_NAME_PATTERN)
    status: Status = "firing"
    reason: str = Field(default="", max_length=2000)
    dedup_key: str | None = Field(default=None, min_length=1, max_length=200)
    labels: dict[str, str] = Field(default_factory=dict)


def parse_alerts(source: str, body: bytes) -> list[AlertSignal]:
    """The signals in ``body`` sent by ``source``; ``AlertPayloadError`` for a bad document."""
    parser = SOURCES.get(source)
    if parser is None:
        raise AlertPayloadError(f"unknown alert source {source!r}", status=404)
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AlertPayloadError(f"body is not JSON: {exc}", status=400) from exc
    if not isinstance(document, dict):
        raise AlertPayloadError("body must be a JSON object", status=400)
    return parser(document, body)


def _validate(shape: type[_Doc], document: dict[str, Any]) -> _Doc:
    """``document`` read as ``shape``; the first mistake, naming its field, as a 422."""
    try:
        return shape.model_validate(document)
    except ValidationError as exc:
        raise AlertPayloadError(describe_first_error(exc, shape)) from exc


def _webhook(source: str) -> Callable[[dict[str, Any], bytes], list[AlertSignal]]:
    def parse(document: dict[str, Any], body: bytes) -> list[AlertSignal]:
        hook = _validate(_Webhook, document)
        per_model: dict[str, list[_WebhookAlert]] = {}
        for alert in hook.alerts:
            labels = {**hook.commonLabels, **alert.labels}
            model = next((labels[k] for k in _MODEL_LABELS if labels.get(k)), None)
            if model is not None:
                per_model.setdefault(model, []).append(alert)
        if not per_model:
            raise AlertPayloadError("no alert carries a `model` label naming the model")
        signals = []
        for model, alerts in sorted(per_model.items()):
            status = "firing" if any(a.status == "firing" for a in alerts) else "resolved"
            fingerprints = sorted(a.fingerprint or _hash(a.labels) for a in alerts)
            key = _hash([hook.groupKey, status, fingerprints, model])
            payload = {
                "groupKey": hook.groupKey,
                "receiver": hook.receiver,
                "alerts": [a.model_dump(exclude_none=True) for a in alerts],
            }
            signals.append(AlertSignal(source, model, status, f"{source}:{key}", payload))
        return signals

    return parse


def _evidently(document: dict[str, Any], body: bytes) -> list[AlertSignal]:
    alert = _validate(_Evidently, document)
    key = alert.report_id or _hash_bytes(body)
    payload = alert.model_dump(exclude_none=True)
    return [AlertSignal("evidently", alert.model, alert.status, f"evidently:{key}", payload)]


def _generic(document: dict[str, Any], body: bytes) -> list[AlertSignal]:
    alert = _validate(_Generic, document)
    key = alert.dedup_key or _hash_bytes(body)
    payload = alert.model_dump(exclude_none=True)
    return [AlertSignal("generic", alert.model, alert.status, f"generic:{key}", payload)]


SOURCES: dict[str, Callable[[dict[str, Any], bytes], list[AlertSignal]]] = {
    "alertmanager": _webhook("alertmanager"),
    "grafana": _webhook("grafana"),
    "evidently": _evidently,
    "generic": _generic,
}


def _hash(value: Any) -> str:
    return _hash_bytes(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


def _hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
