"""The one trigger decision every route into a retrain passes: alert, drift, schedule, hand.

Rules, the same for every caller (the alert dispatcher, the drift monitor, the retrain flow):

- a retrain started **by hand** always goes ahead (one at a time: the flow holds the model's
  concurrency slot, so a second one waits for the first);
- an **automatic** trigger (``alert``, ``drift``, ``schedule``) is *folded* into the last
  retrain of the model when that one was requested or started less than the spec's
  ``cooldown_minutes`` ago, or is still running; otherwise it starts one.

What "the last retrain" is comes from the registry's event log (``retrain.requested`` when a
route asks Prefect for a run, ``retrain.started`` when a run begins), so every process and
every receiver sees the same history. Times are the trigger's own clock (``at`` in the
payload), which lets a simulation or a test move time without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = [
    "AUTOMATIC_TRIGGERS",
    "RETRAIN_REQUESTED",
    "RETRAIN_SKIPPED",
    "RETRAIN_STARTED",
    "LastRetrain",
    "TriggerDecision",
    "decide",
    "decide_trigger",
    "last_retrain",
    "record_trigger",
]

RETRAIN_REQUESTED = "retrain.requested"
RETRAIN_STARTED = "retrain.started"
RETRAIN_SKIPPED = "retrain.skipped"
AUTOMATIC_TRIGGERS = frozenset({"alert", "drift", "schedule"})


@dataclass(frozen=True)
class LastRetrain:
    """The newest retrain of a model that a route asked for or a run began."""

    at: datetime
    run_id: str | None
    trigger: str


@dataclass(frozen=True)
class TriggerDecision:
    """Whether a trigger starts a retrain; when not, which run absorbs it and why."""

    start: bool
    reason: str
    folded_into: str | None = None


def decide(
    last: LastRetrain | None,
    trigger: str,
    *,
    cooldown_minutes: float,
    now: datetime,
    drift_triggers: bool = True,
    is_running: Callable[[str], bool] = lambda _run_id: False,
) -> TriggerDecision:
    """The rule itself, without I/O (see the module docstring). ``drift_triggers`` is the
    spec's ``triggers.drift``: when off, drift events and alerts start nothing."""
    if trigger not in AUTOMATIC_TRIGGERS:
        return TriggerDecision(True, f"started by {trigger}")
    if trigger in ("alert", "drift") and not drift_triggers:
        return TriggerDecision(False, f"{trigger}: the spec turns drift triggers off")
    if last is None:
        return TriggerDecision(True, f"{trigger}: no earlier retrain")
    age = now - last.at
    cooldown = timedelta(minutes=cooldown_minutes)
    if age < cooldown:
        minutes = max(age.total_seconds(), 0.0) / 60.0
        return TriggerDecision(
            False,
            f"{trigger}: folded into the retrain {minutes:.0f} min ago "
            f"(cooldown {cooldown_minutes:g} min)",
            last.run_id,
        )
    if last.run_id and is_running(last.run_id):
        return TriggerDecision(False, f"{trigger}: folded into the running retrain", last.run_id)
    return TriggerDecision(True, f"{trigger}: cooldown of {cooldown_minutes:g} min has passed")


def last_retrain(
    registry: Registry, model: str, *, ignore_run: str | None = None
) -> LastRetrain | None:
    """The newest ``retrain.requested``/``retrain.started`` of ``model`` (not ``ignore_run``)."""
    events = registry.catalog.events(model, kinds=[RETRAIN_REQUESTED, RETRAIN_STARTED], limit=20)
    for event in reversed(events):
        payload = event.payload or {}
        run_id = payload.get("flow_run_id")
        if ignore_run is not None and run_id == ignore_run:
            continue
        at = payload.get("at")
        when = datetime.fromisoformat(at) if isinstance(at, str) else event.created_at
        return LastRetrain(when, str(run_id) if run_id else None, str(payload.get("trigger", "")))
    return None


def decide_trigger(
    registry: Registry,
    model: str,
    trigger: str,
    *,
    cooldown_minutes: float,
    now: datetime,
    drift_triggers: bool = True,
    run_id: str | None = None,
    is_running: Callable[[str], bool] = lambda _run_id: False,
) -> TriggerDecision:
    """Decide ``trigger`` for ``model`` from the event log; ``run_id`` is the asking run."""
    last = last_retrain(registry, model, ignore_run=run_id)
    return decide(
        last,
        trigger,
        cooldown_minutes=cooldown_minutes,
        now=now,
        drift_triggers=drift_triggers,
        is_running=is_running,
    )


def record_trigger(
    registry: Registry,
    kind: str,
    model: str,
    trigger: str,
    *,
    now: datetime,
    run_id: str | None,
    reason: str,
    actor: str,
    extra: dict[str, object] | None = None,
) -> None:
    """Append ``kind`` (requested, started or skipped) with the trigger's time and run id."""
    registry.catalog.append_event(
        kind,
        model=model,
        reason=reason,
        actor=actor,
        payload={
            "trigger": trigger,
            "flow_run_id": run_id,
            "at": now.isoformat(),
            **(extra or {}),
        },
    )
