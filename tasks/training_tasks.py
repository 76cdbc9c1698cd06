"""Prefect tasks over training and the gate (thin: call the plain function, return its result)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from models.config import ModelConfig, TrainingConfig
from tasks.gate import GateDecision, GateRules, evaluate_candidate
from tasks.training import TrainResult, train_model

if TYPE_CHECKING:
    from registry.store import Registry
    from tasks.tracking import Tracker

__all__ = ["evaluate_candidate_task", "train_candidate"]


# Registries and trackers are live clients: inputs are not hashed for caching.
@task(name="train-candidate", cache_policy=NO_CACHE)
def train_candidate(
    registry: Registry,
    data: pd.DataFrame | str,
    *,
    model: str,
    target: str,
    task: str,
    numeric: Sequence[str],
    categorical: Sequence[str] = (),
    model_config: ModelConfig | None = None,
    training: TrainingConfig | None = None,
    dataset_digest: str | None = None,
    lineage: Mapping[str, Any] | None = None,
    run_info: Mapping[str, Any] | None = None,
    tracker: Tracker | None = None,
    checkpoint_root: Path | None = None,
    actor: str = "flow",
) -> TrainResult:
    """Train on the snapshot and register the result as a ``candidate`` version."""
    return train_model(
        registry,
        data,
        model=model,
        target=target,
        task=task,
        numeric=numeric,
        categorical=categorical,
        model_config=model_config,
        training=training,
        dataset_digest=dataset_digest,
        lineage=lineage,
        run_info=run_info,
        tracker=tracker,
        checkpoint_root=checkpoint_root,
        actor=actor,
    )


@task(name="evaluate-candidate", cache_policy=NO_CACHE)
def evaluate_candidate_task(
    registry: Registry,
    model: str,
    candidate_version: int,
    holdout: pd.DataFrame | str,
    rules: GateRules,
    *,
    against: str | int | None = "champion",
    holdout_digest: str | None = None,
    actor: str = "gate",
) -> GateDecision:
    """Gate the candidate against the champion on the frozen holdout; the decision is recorded."""
    return evaluate_candidate(
        registry,
        model,
        candidate_version,
        holdout,
        rules,
        against=against,
        holdout_digest=holdout_digest,
        actor=actor,
    )
