"""``monitor-drift``: recent production data against the champion's training data."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.context import open_pipeline
from tasks.data_tasks import detect_drift_task, load_dataset
from tasks.pipeline_runs import champion_reference
from tasks.pipeline_tasks import signal_drift_task

__all__ = ["monitor_drift"]


@flow(name="monitor-drift", log_prints=True)
def monitor_drift(pipeline: str, source: str | None = None) -> dict[str, Any]:
    """Measure drift; on drift emit ``ml.drift.detected`` so the drift trigger can retrain."""
    with open_pipeline(pipeline) as ctx:
        spec, reg = ctx.spec, ctx.registry
        reference = champion_reference(reg, spec.name)
        if reference is None:
            print(f"{spec.name} has no champion yet: nothing to compare with")
            return {"model": spec.name, "drifted": False, "reason": "no champion"}
        current = load_dataset(source or spec.dataset.recent or spec.dataset.source, **ctx.s3)
        report_name = f"{spec.name}-monitor"
        result = detect_drift_task(reg, reference[1], current, spec.drift, name=report_name)
        event_id = None
        if result.drifted and spec.triggers.drift:
            event_id = signal_drift_task(reg, spec.name, result, report_name=report_name)
        print(result.summary())
        return {
            "model": spec.name,
            "champion": reference[0],
            "drifted": result.drifted,
            "drifted_share": result.drifted_share,
            "columns": result.drifted_columns,
            "event_id": event_id,
        }
