"""``monitor-drift``: recent production data against the champion's training data.

On drift it asks the one trigger decision (``tasks.pipeline.trigger``) whether a retrain may
start; only then does it emit ``ml.drift.detected``, the event ``retrain-on-drift-<model>``
reacts to. Drift inside the cooldown of the last retrain is recorded, and starts nothing.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

from prefect import flow, get_run_logger

from flows.context import open_pipeline, trigger_time
from retrain.config.settings import Settings
from tasks.data.privacy import apply_pii
from tasks.pipeline.cycle import MonitorResult, check_drift
from tasks.pipeline_tasks import detect_drift_task, load_dataset, signal_drift_task

__all__ = ["monitor_drift"]


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
        spec = ctx.spec
        current_source = source or spec.dataset.recent or spec.dataset.source
        # Personal columns go inside the load task: its result never holds them.
        private = partial(apply_pii, policy=spec.plan.privacy, key=ctx.pii_key)
        current = load_dataset(current_source, transform=private, **ctx.settings.s3_options)
        return check_drift(
            ctx.registry,
            spec,
            current,
            now=now,
            detect=detect_drift_task,
            signal=signal_drift_task,
            say=get_run_logger().info,
            pii_applied=True,
        )
