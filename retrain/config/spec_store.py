"""Registered pipeline specs: stored content-hashed in the registry, found by name.

A spec is stored as its canonical JSON blob plus a ``pipeline_spec`` artifact named after the
spec. Registering the same spec twice adds nothing. The artifact's ``meta`` carries what the
alert receiver and ``retrain pipelines ls`` need without parsing the whole spec.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from registry.errors import NotFoundError

if TYPE_CHECKING:
    from registry.records import ArtifactRecord
    from registry.store import Registry
    from retrain.config.specs import PipelineSpec

__all__ = [
    "SPEC_ARTIFACT_KIND",
    "PipelineSummary",
    "get_registered_spec",
    "list_registered_pipelines",
    "register_spec",
    "spec_from_file_or_registry",
]

SPEC_ARTIFACT_KIND = "pipeline_spec"


@dataclass(frozen=True)
class PipelineSummary:
    """What the registry knows about one registered pipeline without loading its spec."""

    name: str
    digest: str
    task: str
    target: str
    drift_trigger: bool
    cooldown_minutes: int
    retrain_cron: str | None
    monitor_cron: str | None
    registered_at: str
    created: bool = False

    @classmethod
    def from_artifact(cls, record: ArtifactRecord, *, created: bool = False) -> PipelineSummary:
        """Read a summary back from a ``pipeline_spec`` artifact's meta."""
        meta: dict[str, Any] = record.meta or {}
        return cls(
            name=record.name,
            digest=record.digest,
            task=str(meta.get("task", "?")),
            target=str(meta.get("target", "?")),
            drift_trigger=bool(meta.get("drift_trigger", True)),
            cooldown_minutes=int(meta.get("cooldown_minutes", 60)),
            retrain_cron=meta.get("retrain_cron"),
            monitor_cron=meta.get("monitor_cron"),
            registered_at=record.created_at.isoformat(timespec="seconds"),
            created=created,
        )


def register_spec(registry: Registry, spec: PipelineSpec) -> PipelineSummary:
    """Store ``spec`` content-hashed under its name; a no-op when the same spec is current."""
    from retrain.config.specs import canonical_json

    latest = registry.catalog.latest_artifact(SPEC_ARTIFACT_KIND, spec.name)
    if latest is not None and latest.digest == spec.digest:  # its blob is stored already
        return PipelineSummary.from_artifact(latest)
    digest = registry.put_bytes(canonical_json(spec), media_type="application/json")
    meta = {
        "task": spec.task,
        "target": spec.target,
        "drift_trigger": spec.triggers.drift,
        "cooldown_minutes": spec.triggers.cooldown_minutes,
        "retrain_cron": spec.schedule.retrain_cron,
        "monitor_cron": spec.schedule.monitor_cron,
        "timezone": spec.schedule.timezone,
        "source": spec.dataset.source,
        "description": spec.description,
    }
    record = registry.catalog.register_artifact(SPEC_ARTIFACT_KIND, spec.name, digest, meta=meta)
    return PipelineSummary.from_artifact(record, created=True)


def list_registered_pipelines(registry: Registry) -> list[PipelineSummary]:
    """The current version of every registered pipeline, by name."""
    # Oldest first: each name keeps its newest record.
    latest = {r.name: r for r in registry.catalog.artifacts(kind=SPEC_ARTIFACT_KIND)}
    return [PipelineSummary.from_artifact(latest[name]) for name in sorted(latest)]


def get_registered_spec(registry: Registry, name: str) -> PipelineSpec:
    """The current spec registered as ``name``; ``NotFoundError`` names the fix if none is."""
    from retrain.config.specs import PipelineSpec

    record = registry.catalog.latest_artifact(SPEC_ARTIFACT_KIND, name)
    if record is None:
        raise NotFoundError(
            f"no pipeline named {name!r}; register one with `retrain pipelines register SPEC`"
        )
    return PipelineSpec.model_validate(json.loads(registry.get_bytes(record.digest)))


def spec_from_file_or_registry(registry: Registry, given: str) -> PipelineSpec:
    """The spec in file ``given`` (``.yaml``/``.yml``/``.json``, or any existing path), else
    the pipeline registered as ``given``."""
    from pathlib import Path

    from retrain.config.specs import load_spec

    path = Path(given)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        return load_spec(path)
    return get_registered_spec(registry, given)
