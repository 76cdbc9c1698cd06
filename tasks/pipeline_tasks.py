"""The pipeline's steps as Prefect tasks: what the retrain flow runs, step by step.

Each task is a thin face over the plain function of the same step, so tests and scripts call
the functions and the Prefect UI shows one task run per step. The run's decisions are logged
through Prefect's run logger, so a deployment run shows them in the UI's logs. A task run
stopped by one of the platform's own errors is logged as one line, without its traceback
(``tasks.pipeline.failures``): the flow says why once, in its state message.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.data.drift_events import signal_drift
from tasks.data.sources import load_frame
from tasks.pipeline.failures import quiet_platform_tracebacks
from tasks.pipeline.recipe import Steps
from tasks.pipeline.release_step import release_candidate
from tasks.pipeline.resume import train_or_resume
from tasks.pipeline.retries import TRANSIENT_RETRIES
from tasks.pipeline.runs import find_completed_run, record_run
from tasks.pipeline.steps import (
    check_contract,
    gate_candidate,
    measure_drift,
    prepare_data,
)

__all__ = [
    "PREFECT_STEPS",
    "detect_drift_task",
    "load_dataset",
    "signal_drift_task",
]

quiet_platform_tracebacks()

# Registries are live clients and frames are large: inputs are never hashed for caching.
# Every step but the release retries a transient store, database or network failure
# (tasks.pipeline.retries); the release moves live traffic, and a release that failed leaves
# its candidate for the next run (release repair, tasks.pipeline.resume) instead.
_RETRYING = {"cache_policy": NO_CACHE, **TRANSIENT_RETRIES}
load_dataset = task(name="load-dataset", **_RETRYING)(load_frame)
detect_drift_task = task(name="detect-drift", **_RETRYING)(measure_drift)
signal_drift_task = task(name="signal-drift", **_RETRYING)(signal_drift)

PREFECT_STEPS = Steps(
    load=load_dataset,
    prepare=task(name="snapshot-and-split", **_RETRYING)(prepare_data),
    validate=task(name="validate-snapshot", **_RETRYING)(check_contract),
    find_reusable=task(name="find-reusable-run", **_RETRYING)(find_completed_run),
    drift=detect_drift_task,
    # A candidate an unfinished run of the same inputs registered is taken up, not trained
    # again: a retried or restarted run never registers a second version of one bundle.
    train=task(name="train-candidate", **_RETRYING)(train_or_resume),
    gate=task(name="evaluate-candidate", **_RETRYING)(gate_candidate),
    release=task(name="release-candidate", cache_policy=NO_CACHE)(release_candidate),
    record=task(name="record-retrain", **_RETRYING)(record_run),
    logger=get_run_logger,
)
"""The retrain's steps, each run as a Prefect task (see ``tasks.pipeline.recipe``)."""
