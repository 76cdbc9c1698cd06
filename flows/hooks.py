"""The retrain flow's slot and its crash and cancellation hooks: a dead run's release and
retrain slot are given back at once.

One retrain per model runs at a time: the flow holds the model's slot (the global
concurrency limit ``retrain-<model>``, one slot, made here when missing) under a lease it
renews while alive (``retrain_slot``). The lease is labelled on the flow run
(``retrain.slot-lease``).

When a worker's flow-run process dies (killed, out of memory, its pod evicted) the worker
marks the run ``Crashed`` and runs the flow's ``on_crashed`` hooks in a fresh process; a
cancelled run runs its ``on_cancellation`` hooks. Both call ``end_dead_run``, which gives the
labelled lease back (the model's next retrain starts now, not when the lease would have run
out) and hands over to ``tasks.pipeline.crashes.clean_up_dead_run`` with the worker's
settings (release cleared, ``run.crashed`` recorded). A hook never raises: Prefect would only
log it. Were no hook to run at all (the worker's machine gone), the slot comes back once its
lease lapses (``RETRAIN_SLOT_LEASE_S``), and the next retrain repairs the expired release.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from uuid import UUID

from flows.context import flow_run_id, registry_for, retrain_limit_name

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun, State

__all__ = ["RETRAIN_SLOT_LEASE_S", "SLOT_LEASE_LABEL", "end_dead_run", "retrain_slot"]

# Seconds a retrain slot outlives a run that can no longer renew it (renewed every 45 s).
RETRAIN_SLOT_LEASE_S = 60.0
SLOT_LEASE_LABEL = "retrain.slot-lease"
_log = logging.getLogger(__name__)
Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


@contextmanager
def retrain_slot(model: str) -> Iterator[None]:
    """Hold ``model``'s one retrain slot while inside, its lease labelled on the flow run."""
    from prefect.concurrency.sync import concurrency

    name = retrain_limit_name(model)
    _ensure_limit(name)
    with concurrency(name, occupy=1, lease_duration=RETRAIN_SLOT_LEASE_S):
        _label_lease()
        yield


def _ensure_limit(name: str) -> None:
    """Create the one-slot limit ``name`` when it is missing (deployments made by a bare
    ``prefect deploy`` come without it; without it nothing would keep retrains apart)."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            client.upsert_global_concurrency_limit_by_name(name, 1)
    except Exception as exc:  # made by a run starting at the same time, or the API blinked
        _log.info("retrain limit %s not ensured: %s", name, exc)


def _label_lease() -> None:
    """Label the run with the lease just granted (best effort: without the label a crashed
    run's slot comes back when the lease lapses)."""
    from prefect.client.orchestration import get_client
    from prefect.concurrency.context import ConcurrencyContext

    context = ConcurrencyContext.get()
    run_id = flow_run_id()
    if context is None or not context.cleanup_lease_ids or run_id is None:
        return
    try:
        with get_client(sync_client=True) as client:
            labels: dict[str, bool | int | float | str] = {
                SLOT_LEASE_LABEL: str(context.cleanup_lease_ids[-1])
            }
            client.update_flow_run_labels(UUID(run_id), labels)
    except Exception as exc:  # the API blinked: the lease still lapses on its own
        _log.warning("could not label the retrain slot's lease: %s", exc)


def end_dead_run(flow: Any, flow_run: FlowRun, state: State[Any]) -> None:
    """``on_crashed``/``on_cancellation`` hook of ``retrain-model`` (see the module)."""
    from retrain.config.settings import Settings
    from tasks.pipeline.crashes import clean_up_dead_run

    log = _run_logger(flow_run)
    model = flow_run.parameters.get("pipeline")
    if not isinstance(model, str):
        log.warning("run %s names no pipeline: nothing to clean up", flow_run.id)
        return
    freed = _give_back_slot(flow_run, log)
    given = flow_run.parameters.get("settings")
    try:
        settings = Settings.model_validate(given) if isinstance(given, dict) else None
        with registry_for(settings) as (_, registry):
            done = clean_up_dead_run(
                registry,
                model,
                str(flow_run.id),
                ended=state.name or state.type.value,
                message=state.message or "",
            )
    except Exception as exc:  # the registry is out of reach: the next retrain repairs it
        log.warning("could not clean up after run %s of %s: %s", flow_run.id, model, exc)
        return
    what = "its release cleared" if done.released else "no release of its was live"
    kept = ", ".join(f"v{v}" for v in done.versions) or "none"
    slot = "given back" if freed else "left to its lease"
    log.info(
        "run of %s ended %s: %s, retrain slot %s; candidates kept for the next run: %s",
        model, state.name, what, slot, kept,
    )  # fmt: skip


def _run_logger(flow_run: FlowRun) -> Logger:
    from prefect.logging.loggers import flow_run_logger

    try:
        return flow_run_logger(flow_run)
    except Exception:  # no API to send the log to: the worker's own log still has it
        return _log


def _give_back_slot(flow_run: FlowRun, log: Logger) -> bool:
    """Release the slot lease the dead run labelled (read afresh: the worker's copy of the
    run predates the label); whether one was released."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            labels = client.read_flow_run(flow_run.id).labels or {}
            lease = labels.get(SLOT_LEASE_LABEL)
            if not isinstance(lease, str):
                return False
            client.release_concurrency_slots_with_lease(UUID(lease))
    except Exception as exc:  # gone already (lapsed) or the API is away: it lapses anyway
        log.info("retrain slot of run %s left to its lease: %s", flow_run.id, exc)
        return False
    return True
