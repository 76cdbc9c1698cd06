"""A registered pipeline's state: ``active``, ``paused`` (no schedules, alerts ignored) or
``removed`` (no longer listed, served or alertable; its history stays in the registry).

The state is kept on the pipeline's newest ``pipeline_spec`` artifact (a new row with the same
spec digest), so every reader of the spec store sees it in the same query it reads the spec
with; each change is also an event in the model's history (``pipeline.paused``,
``pipeline.resumed``, ``pipeline.removed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from registry.errors import ConfigError, NotFoundError
from retrain.config.spec_store import (
    ACTIVE,
    PAUSED,
    REMOVED,
    SPEC_ARTIFACT_KIND,
    PipelineSummary,
)

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["StateChange", "set_pipeline_state"]

_EVENT = {PAUSED: "pipeline.paused", ACTIVE: "pipeline.resumed", REMOVED: "pipeline.removed"}


@dataclass(frozen=True)
class StateChange:
    """What a state change did: the pipeline's summary after it, whether it changed, and the
    state it was in before."""

    summary: PipelineSummary
    changed: bool
    before: str


def set_pipeline_state(
    registry: Registry, name: str, state: str, *, actor: str = "cli", reason: str = ""
) -> StateChange:
    """Put pipeline ``name`` in ``state``; a no-op when it is in it already.

    ``NotFoundError`` when no pipeline has that name, or (for pause and resume) when it was
    removed: only registering its spec again brings a removed pipeline back.
    """
    if state not in _EVENT:
        raise ConfigError(f"unknown pipeline state {state!r}: use active, paused or removed")
    record = registry.catalog.latest_artifact(SPEC_ARTIFACT_KIND, name)
    if record is None:
        raise NotFoundError(f"no pipeline named {name!r}; `retrain pipelines ls` lists them")
    meta = dict(record.meta or {})
    before = str(meta.get("state", ACTIVE))
    if before == REMOVED and state != REMOVED:
        raise NotFoundError(
            f"pipeline {name!r} was removed; register its spec again with "
            "`retrain pipelines register SPEC`"
        )
    if before == state:
        return StateChange(PipelineSummary.from_artifact(record), changed=False, before=before)
    meta["state"] = state
    changed = registry.catalog.register_artifact(SPEC_ARTIFACT_KIND, name, record.digest, meta=meta)
    registry.catalog.append_event(
        _EVENT[state],
        model=name,
        reason=reason or f"pipeline {state}",
        actor=actor,
        payload={"spec_digest": record.digest, "before": before},
    )
    return StateChange(PipelineSummary.from_artifact(changed), changed=True, before=before)
