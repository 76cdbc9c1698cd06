"""One model version's provenance, gathered from the registry: from what (data, spec,
contract), by what (code, seed, hyperparameters, environment), why it was promoted or not
(gate verdict with its numbers, release outcome), and what happened to it (its events).

Everything comes from the version's lineage record (``tasks.training.bundling``: the bundle's
manifest plus the run's facts), its stored spec, and the event log; nothing is recomputed.
The result is plain JSON types: ``retrain models show --json`` prints it as it is.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from registry.errors import ConfigError, NotFoundError, RetrainError
from registry.redaction import redact_url

if TYPE_CHECKING:
    from registry.records import EventRecord, ModelVersionRecord
    from registry.store import Registry
    from retrain.config.settings import Settings

__all__ = ["parse_reference", "provenance"]

_ENVIRONMENT = ("python", "torch", "lightning", "numpy", "safetensors")


def parse_reference(reference: str) -> tuple[str, int | None]:
    """``NAME`` or ``NAME:VERSION`` as (name, version or None)."""
    name, colon, tail = reference.rpartition(":")
    if not colon:
        return reference, None
    if not tail.isdigit() or int(tail) < 1:
        raise ConfigError(
            f"{reference!r}: the version after ':' must be a whole number from 1, "
            f"as in {name or 'NAME'}:1"
        )
    return name, int(tail)


def provenance(
    registry: Registry, settings: Settings, model: str, version: int | None
) -> dict[str, Any]:
    """Everything recorded about ``model`` v``version`` (default: the champion)."""
    catalog = registry.catalog
    if model not in catalog.list_models():
        raise ConfigError(f"no model named {model!r}: see `retrain models ls`")
    aliases = catalog.aliases(model)
    if version is None:
        version = aliases.get("champion")
        if version is None:
            raise ConfigError(
                f"{model} has no champion: name a version, as in {model}:1 "
                f"(`retrain models history {model}` lists them)"
            )
    try:
        record = catalog.get_model_version(model, version)
    except NotFoundError:
        newest = len(catalog.list_model_versions(model))
        raise ConfigError(
            f"{model} has no version {version}: it has versions 1 to {newest}"
        ) from None
    events = [e for e in catalog.events(model) if _concerns(e, version)]
    lineage = record.lineage
    return {
        "model": model,
        "version": version,
        "status": record.status,
        "aliases": sorted(a for a, v in aliases.items() if v == version),
        "registered": record.created_at.isoformat(timespec="seconds"),
        "bundle_digest": record.bundle_digest,
        "data": _data(registry, record, events),
        "code": {"digest": lineage.get("code_digest"), "git_commit": lineage.get("git_commit")},
        "spec": {"digest": lineage.get("spec_digest")},
        "contract": {"digest": _contract_digest(registry, lineage)},
        "seed": lineage.get("seed"),
        "hyperparameters": lineage.get("hyperparameters") or {},
        "environment": _environment(lineage),
        "gate": _gate(events, version),
        "release": _release(events, version),
        "run": _run(settings, lineage),
        "cost": {
            "stages": lineage.get("cost") or {},
            "training_budget": lineage.get("training_budget"),
        },
        "events": [
            {
                "id": e.id,
                "when": e.created_at.isoformat(timespec="seconds"),
                "event": e.kind,
                "why": e.reason,
                "by": e.actor,
            }
            for e in events
        ],
    }


def _concerns(event: EventRecord, version: int) -> bool:
    payload = event.payload
    named = (payload.get("version"), payload.get("candidate_version"))
    return version in event.versions or version in named


def _data(
    registry: Registry, record: ModelVersionRecord, events: list[EventRecord]
) -> dict[str, Any]:
    """The snapshots the version was trained and graded on, their rows, and the source."""
    lineage = record.lineage
    source, origin = lineage.get("source"), "run" if lineage.get("source") else None
    if source is None:
        source = (_stored_spec(registry, lineage).get("dataset") or {}).get("source")
        origin = "spec" if source else None
    batch = next(
        (
            {"digest": e.payload.get("dataset_digest"), "rows": e.payload.get("rows")}
            for e in reversed(events)
            if e.kind == "retrain.completed" and e.payload.get("dataset_digest")
        ),
        None,
    )
    return {
        "source": source,
        "source_from": origin,
        "batch": batch,
        "training": _snapshot(registry, lineage.get("dataset_digest")),
        "holdout": _snapshot(registry, lineage.get("holdout_digest")),
    }


def _snapshot(registry: Registry, digest: Any) -> dict[str, Any] | None:
    if not isinstance(digest, str) or not digest:
        return None
    try:
        rows: int | None = registry.catalog.get_dataset(digest).rows
    except RetrainError:  # trained from a frame, or not a registered snapshot
        rows = None
    return {"digest": digest, "rows": rows}


def _stored_spec(registry: Registry, lineage: dict[str, Any]) -> dict[str, Any]:
    """The spec the version was trained by, as stored (empty when it is not there)."""
    digest = lineage.get("spec_digest")
    if not isinstance(digest, str) or not digest:
        return {}
    try:
        spec = json.loads(registry.get_bytes(digest))
    except (RetrainError, ValueError):
        return {}
    return spec if isinstance(spec, dict) else {}


def _contract_digest(registry: Registry, lineage: dict[str, Any]) -> str | None:
    recorded = lineage.get("contract_digest")
    if recorded:
        return str(recorded)
    stored = (_stored_spec(registry, lineage).get("dataset") or {}).get("contract_digest")
    return str(stored) if stored else None


def _environment(lineage: dict[str, Any]) -> dict[str, Any]:
    libraries = lineage.get("libraries") or {}
    found = {name: libraries.get(name) for name in _ENVIRONMENT}
    return {**found, "device": lineage.get("device"), "precision": lineage.get("precision")}


def _gate(events: list[EventRecord], version: int) -> dict[str, Any] | None:
    """The newest gate decision on this version, with its numbers."""
    decided = [
        e.payload
        for e in events
        if e.kind == "gate.decision" and e.payload.get("candidate_version") == version
    ]
    if not decided:
        return None
    d = decided[-1]
    metric = d.get("metric")
    return {
        "verdict": d.get("verdict"),
        "metric": metric,
        "candidate": (d.get("candidate_metrics") or {}).get(metric),
        "champion_version": d.get("champion_version"),
        "champion": (d.get("champion_metrics") or {}).get(metric),
        "floor": (d.get("rules") or {}).get("floor"),
        "difference": d.get("difference"),
        "ci": [d.get("ci_low"), d.get("ci_high")],
        "confidence": d.get("confidence"),
        "holdout_digest": d.get("holdout_digest"),
        "holdout_rows": d.get("holdout_rows"),
        "checks": [
            {"rule": c.get("name"), "passed": c.get("passed"), "detail": c.get("detail")}
            for c in d.get("checks") or []
        ],
        "card_digest": d.get("card_digest"),
    }


def _release(events: list[EventRecord], version: int) -> dict[str, Any] | None:
    """How the version's release ended (the newest ``release.outcome``), if it had one."""
    for event in reversed(events):
        if event.kind == "release.outcome" and event.payload.get("version") == version:
            return {
                "outcome": event.payload.get("outcome"),
                "mode": event.payload.get("mode"),
                "why": event.reason,
                "champion_after": event.payload.get("champion"),
                "card_digest": event.payload.get("card_digest"),
                "when": event.created_at.isoformat(timespec="seconds"),
            }
    return None


def _run(settings: Settings, lineage: dict[str, Any]) -> dict[str, Any]:
    """The run that trained it: Prefect flow run, trigger, MLflow run and where to see it."""
    run_id = lineage.get("mlflow_run_id")
    url = None
    if run_id:
        uri = settings.tracking_uri
        remote = uri.startswith(("http://", "https://"))
        base = redact_url(uri.rstrip("/")) if remote else f"http://127.0.0.1:{settings.mlflow_port}"
        url = f"{base}/#/runs/{run_id}"
    return {
        "flow_run_id": lineage.get("flow_run_id"),
        "trigger": lineage.get("trigger"),
        "mlflow_run_id": run_id,
        "mlflow_url": url,
    }
