"""The pipeline's steps as Prefect tasks: what the retrain flow runs, step by step.

Each task is a thin face over the plain function of the same step, so tests and scripts call
the functions and the Prefect UI shows one task run per step. The run's decisions are logged
through Prefect's run logger, so a deployment run shows them in the UI's logs.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.data.drift_events import signal_drift
from tasks.data.sources import load_frame
from tasks.pipeline.recipe import Steps
from tasks.pipeline.release_step import release_candidate
from tasks.pipeline.runs import find_completed_run, record_run
from tasks.pipeline.steps import (
    check_contract,
    gate_candidate,
    measure_drift,
    prepare_data,
    train_candidate,
)

__all__ = [
    "PREFECT_STEPS",
    "detect_drift_task",
    "load_dataset",
    "signal_drift_task",
]

# Registries are live clients and frames are large: inputs are never hashed for caching.
load_dataset = task(name="load-dataset", cache_policy=NO_CACHE)(load_frame)
detect_drift_task = task(name="detect-drift", cache_policy=NO_CACHE)(measure_drift)
signal_drift_task = task(name="signal-drift", cache_policy=NO_CACHE)(signal_drift)

PREFECT_STEPS = Steps(
    load=load_dataset,
    prepare=task(name="snapshot-and-split", cache_policy=NO_CACHE)(prepare_data),
    validate=task(name="validate-snapshot", cache_policy=NO_CACHE)(check_contract),
    find_reusable=task(name="find-reusable-run", cache_policy=NO_CACHE)(find_completed_run),
    drift=detect_drift_task,
    train=task(name="train-candidate", cache_policy=NO_CACHE)(train_candidate),
    gate=task(name="evaluate-candidate", cache_policy=NO_CACHE)(gate_candidate),
    release=task(name="release-candidate", cache_policy=NO_CACHE)(release_candidate),
    record=task(name="record-retrain", cache_policy=NO_CACHE)(record_run),
    logger=get_run_logger,
)
"""The retrain's steps, each run as a Prefect task (see ``tasks.pipeline.recipe``)."""
