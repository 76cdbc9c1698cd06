"""Prefect tasks over training and the gate: the plain functions, run as Prefect tasks."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.gate import evaluate_candidate
from tasks.training import train_model

__all__ = ["evaluate_candidate_task", "train_candidate"]

# Registries and trackers are live clients: inputs are not hashed for caching.
train_candidate = task(name="train-candidate", cache_policy=NO_CACHE)(train_model)
"""Train on the snapshot and register the result as a ``candidate`` version."""

evaluate_candidate_task = task(name="evaluate-candidate", cache_policy=NO_CACHE)(evaluate_candidate)
"""Gate the candidate against the champion on the frozen holdout; the decision is recorded."""
