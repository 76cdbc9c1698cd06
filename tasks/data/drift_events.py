"""Drift signals: a registry event (the record) and a Prefect event (what triggers react to)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from registry.store import Registry
    from tasks.data.drift_result import DriftResult

__all__ = ["DRIFT_EVENT", "drift_event_resources", "signal_drift"]

DRIFT_EVENT = "ml.drift.detected"


def drift_event_resources(model: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(resource, related) of a drift event: the model, with its dataset related."""
    resource = {"prefect.resource.id": f"ml.model.{model}", "prefect.resource.name": model}
    related = [
        {
            "prefect.resource.id": f"ml.dataset.{model}",
            "prefect.resource.role": "dataset",
            "prefect.resource.name": model,
        }
    ]
    return resource, related


def signal_drift(
    registry: Registry,
    model: str,
    result: DriftResult,
    *,
    report_name: str,
    emit: bool = True,
    publish: bool = True,
) -> str | None:
    """Record ``drift.detected`` in the registry and, if ``emit``, send ``ml.drift.detected``
    to Prefect (the event drift-triggered deployments react to). ``publish=False`` records the
    request without sending it (a loop driven without Prefect starts the retrain itself).

    ``report_name`` names the stored drift report the event links to. Returns the Prefect
    event id (None when nothing was emitted or no Prefect API takes events).
    """
    report = registry.catalog.latest_artifact("drift_report", report_name)
    payload: dict[str, Any] = {
        "drifted_share": result.drifted_share,
        "threshold": result.drift_share,
        "drifted_columns": result.drifted_columns,
        "report_digest": report.digest if report is not None else None,
    }
    registry.catalog.append_event(
        "drift.detected",
        model=model,
        reason=result.summary(),
        actor="monitor-drift",
        payload={**payload, "retrain_requested": emit},
    )
    if not (emit and publish):
        return None
    from prefect.events import emit_event

    resource, related = drift_event_resources(model)
    event = emit_event(DRIFT_EVENT, resource=resource, related=related, payload=payload)
    return str(event.id) if event is not None else None
