"""Registered pipeline specs: stored content-hashed in the registry, found by name.

A spec is stored as its canonical JSON blob plus a ``pipeline_spec`` artifact named after the
spec; its data contract's suite is stored beside it, content-hashed, as a ``contract``
artifact, and the stored spec names it by digest (``dataset.contract_digest``), so a run on any
machine reads the suite from the registry. Registering the same spec twice adds nothing. The
artifact's ``meta`` carries what the alert receiver and ``retrain pipelines ls`` need without
parsing the whole spec, including the pipeline's state (``retrain.config.pipeline_state``):
``active``, ``paused`` or ``removed``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from registry.records import ArtifactRecord
    from registry.store import Registry
    from retrain.config.specs import PipelineSpec

__all__ = [
    "ACTIVE",
    "PAUSED",
    "REMOVED",
    "SPEC_ARTIFACT_KIND",
    "PipelineSummary",
    "get_registered_spec",
    "list_registered_pipelines",
    "register_spec",
    "spec_from_file_or_registry",
    "store_contract",
]

SPEC_ARTIFACT_KIND = "pipeline_spec"
ACTIVE, PAUSED, REMOVED = "active", "paused", "removed"


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
    state: str = ACTIVE
    contract_digest: str | None = None

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
            state=str(meta.get("state", ACTIVE)),
            contract_digest=meta.get("contract_digest"),
        )

    @property
    def paused(self) -> bool:
        """Whether its schedules and alert-started retrains are off (``pipelines pause``)."""
        return self.state == PAUSED


def register_spec(
    registry: Registry, spec: PipelineSpec, *, folders: Sequence[Path] = ()
) -> PipelineSummary:
    """Store ``spec`` content-hashed under its name, its contract's suite beside it (see
    ``store_contract``); a no-op when the same spec is current. A paused pipeline stays paused;
    a removed one comes back."""
    from retrain.config.specs import canonical_json

    spec = store_contract(registry, spec, folders=folders)
    latest = registry.catalog.latest_artifact(SPEC_ARTIFACT_KIND, spec.name)
    before = None if latest is None else str((latest.meta or {}).get("state", ACTIVE))
    state = PAUSED if before == PAUSED else ACTIVE
    if latest is not None and latest.digest == spec.digest and before == state:
        return PipelineSummary.from_artifact(latest)  # its blob is stored already
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
        "contract": spec.dataset.contract,
        "contract_digest": spec.dataset.contract_digest,
        "state": state,
    }
    record = registry.catalog.register_artifact(SPEC_ARTIFACT_KIND, spec.name, digest, meta=meta)
    return PipelineSummary.from_artifact(record, created=True)


def store_contract(
    registry: Registry, spec: PipelineSpec, *, folders: Sequence[Path] = ()
) -> PipelineSpec:
    """Store ``spec``'s contract suite in the registry; the spec naming it by digest.

    The suite read when the spec was loaded is used; a spec built in code has its contract
    found now (a name in ``folders`` or the shipped suites, a path from the working folder).
    A suite not stored yet is first built with GX, so one GX cannot run is refused here
    (``ConfigError``), not at the first run.
    """
    from retrain.config.specs import read_contract
    from tasks.data.contracts import store_suite
    from tasks.data.validation import check_suite

    if spec.dataset.contract is None:
        return spec
    if spec.contract_suite is None:
        spec = read_contract(spec, folders=folders)
    suite = spec.contract_suite
    if suite is None:  # read_contract attaches the suite of every spec with a contract
        raise ConfigError(f"{spec.name}: dataset.contract {spec.dataset.contract} was not read")
    if registry.catalog.get_blob(suite.digest) is None:
        check_suite(suite.suite)
    store_suite(registry, suite, pipeline=spec.name, label=str(spec.dataset.contract))
    return spec


def list_registered_pipelines(
    registry: Registry, *, include_removed: bool = False
) -> list[PipelineSummary]:
    """The current version of every registered pipeline, by name (removed ones only if
    ``include_removed``)."""
    # Oldest first: each name keeps its newest record.
    latest = {r.name: r for r in registry.catalog.artifacts(kind=SPEC_ARTIFACT_KIND)}
    summaries = [PipelineSummary.from_artifact(latest[name]) for name in sorted(latest)]
    return [s for s in summaries if include_removed or s.state != REMOVED]


def get_registered_spec(registry: Registry, name: str) -> PipelineSpec:
    """The current spec registered as ``name``; ``NotFoundError`` names the fix if none is
    (or if it was removed)."""
    from retrain.config.specs import PipelineSpec

    record = registry.catalog.latest_artifact(SPEC_ARTIFACT_KIND, name)
    if record is None:
        raise NotFoundError(
            f"no pipeline named {name!r}; register one with `retrain pipelines register SPEC`"
        )
    if (record.meta or {}).get("state") == REMOVED:
        raise NotFoundError(
            f"pipeline {name!r} was removed (its history stays); register its spec again with "
            "`retrain pipelines register SPEC` to bring it back"
        )
    return PipelineSpec.model_validate(json.loads(registry.get_bytes(record.digest)))


def spec_from_file_or_registry(
    registry: Registry, given: str, *, folders: Sequence[Path] = ()
) -> PipelineSpec:
    """The spec in file ``given`` (``.yaml``/``.yml``/``.json``, or any existing path), else
    the pipeline registered as ``given``; ``folders``: where contract names are looked up."""
    from retrain.config.specs import load_spec

    path = Path(given)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        return load_spec(path, folders=folders)
    return get_registered_spec(registry, given)
