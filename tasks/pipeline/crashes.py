"""What a retrain that died leaves behind, put right: its release, and a record of the death.

A run whose process is killed (a worker or pod gone, a cancellation) runs none of its own
clean-up: a candidate it had in canary keeps its traffic until the release lease runs out, and
nothing in the registry says the run is over. ``clean_up_dead_run`` is what the flow's crash
and cancellation hooks call: it sends the traffic of a release the run held back to the
champion at once (the run is known dead, so its lease need not expire first), leaves any
other release alone, and appends one ``run.crashed`` event naming the run, how it ended and
the versions it registered. Those stay ``candidate``: the next run of the same inputs takes
one up instead of training it again (``tasks.pipeline.resume``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from registry.release import CANARY_ALIAS, LOCK_ALIAS, repair_releases

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["CRASHED_RUN_EVENT", "DeadRunCleanup", "clean_up_dead_run"]

CRASHED_RUN_EVENT = "run.crashed"


@dataclass(frozen=True)
class DeadRunCleanup:
    """What ``clean_up_dead_run`` found and did."""

    model: str
    run_id: str
    versions: list[int]  # registered by the dead run
    released: bool  # its canary and release lock were cleared
    event_id: int


def clean_up_dead_run(
    registry: Registry,
    model: str,
    run_id: str,
    *,
    ended: str,
    message: str = "",
    actor: str = "crash-hook",
) -> DeadRunCleanup:
    """Clear the release ``run_id`` held on ``model`` and record the run's end (``ended``:
    Prefect's state name, e.g. ``Crashed`` or ``Cancelling``)."""
    catalog = registry.catalog
    versions = [
        record.version
        for record in catalog.list_model_versions(model)
        if record.lineage.get("flow_run_id") == run_id
    ]
    aliases = catalog.aliases(model)
    held = aliases.get(LOCK_ALIAS) in versions or (
        aliases.get(LOCK_ALIAS) is None and aliases.get(CANARY_ALIAS) in versions
    )
    # The run is dead: its lease counts as expired. Another release's lease is respected.
    repaired = repair_releases(catalog, [model], actor=actor, now=math.inf if held else None)
    reason = f"retrain run {run_id} ended {ended.lower()}" + (f": {message}" if message else "")
    event = catalog.append_event(
        CRASHED_RUN_EVENT,
        model=model,
        versions=versions,
        reason=reason,
        actor=actor,
        payload={
            "run_id": run_id,
            "state": ended,
            "message": message,
            "candidates": versions,
            "released": bool(repaired),
        },
    )
    return DeadRunCleanup(model, run_id, versions, bool(repaired), event.id)
