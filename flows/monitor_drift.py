"""``monitor-drift``: recent production data against the champion's training data.

On drift it asks the one trigger decision (``tasks.pipeline.trigger``) whether a retrain may
start; only then does it emit ``ml.drift.detected``, the event ``retrain-on-drift-<model>``
reacts to. Drift inside the cooldown of the last retrain is recorded, and starts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from prefect import flow

from flows.context import open_pipeline, trigger_time
from retrain.config.settings import Settings
from tasks.pipeline.runs import champion_reference
from tasks.pipeline.trigger import decide_trigger
from tasks.pipeline_tasks import detect_drift_task, load_dataset, signal_drift_task

__all__ = ["MonitorResult", "monitor_drift"]


@dataclass(frozen=True)
class MonitorResult:
    """What one drift check found and whether it asked for a retrain."""

    model: str
    champion: int | None
    drifted: bool
    drifted_share: float | None = None
    columns: list[str] = field(default_factory=list)
    retrain: str = "not asked"
    event_id: str | None = None


@flow(name="monitor-drift", log_prints=True)
def monitor_drift(
    pipeline: str,
    source: str | None = None,
    as_of: datetime | None = None,
    settings: Settings | None = None,
) -> MonitorResult:
    """Measure drift; when it is found and a retrain may start, emit ``ml.drift.detected``."""
    now = trigger_time(as_of)
    with open_pipeline(pipeline, settings) as ctx:
        spec, reg = ctx.spec, ctx.registry
        reference = champion_reference(reg, spec.name)
        if reference is None:
            print(f"{spec.name} has no champion yet: nothing to compare with")
            return MonitorResult(spec.name, None, False, retrain="no champion")
        current_source = source or spec.dataset.recent or spec.dataset.source
        current = load_dataset(current_source, **ctx.settings.s3_options)
        report_name = f"{spec.name}-monitor"
        result = detect_drift_task(reg, reference[1], current, spec.drift, name=report_name)
        print(result.summary())
        retrain, event_id = "no drift", None
        if result.drifted:
            decision = decide_trigger(
                reg,
                spec.name,
                "drift",
                cooldown_minutes=spec.triggers.cooldown_minutes,
                drift_triggers=spec.triggers.drift,
                now=now,
            )
            retrain = "requested" if decision.start else decision.reason
            event_id = signal_drift_task(
                reg, spec.name, result, report_name=report_name, emit=decision.start
            )
            print(f"retrain: {retrain}")
        return MonitorResult(
            model=spec.name,
            champion=reference[0],
            drifted=result.drifted,
            drifted_share=result.drifted_share,
            columns=result.drifted_columns,
            retrain=retrain,
            event_id=event_id,
        )
