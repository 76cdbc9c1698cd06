"""The gate's serving budget: a candidate that costs too much to serve does not go forward.

Two measures, each checked only when the spec's ``budget:`` sets its limit:

- **p95 latency**: p95 of single-instance predictions as the model server makes them (the
  gate's own ``latency_p95_ms``, reused when the latency rule measured it already).
- **CPU per 1k predictions**: ``cpu_samples`` (default 1000) single instances drawn from the
  holdout with the gate's seed, each predicted alone as a request of one instance is, after
  one warm-up prediction; the process CPU time (``time.process_time``: user + system of every
  thread of the gate's process) they took, in ms per 1000 predictions. The model server
  exports the same measure per version (``retrain_predict_cpu_seconds_total``), counted with
  thread CPU time around each scoring call.

A failed check reads ``serving budget: p95 12.3 ms > 10 ms`` or ``serving budget: cpu 5.1 ms
per 1k predictions > 4``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tasks.gate.checks import latency_p95_ms, request_instances
from tasks.gate.model_card import Check

if TYPE_CHECKING:
    import pandas as pd

    from models.bundle import ModelBundle

__all__ = ["CHECK_NAME", "ServingBudget", "cpu_ms_per_1k", "serving_budget_checks"]

CHECK_NAME = "serving budget"


@dataclass(frozen=True)
class ServingBudget:
    """What one prediction may cost: p95 latency and CPU ms per 1000 (None: no limit)."""

    max_p95_ms: float | None = None
    max_cpu_ms_per_1k: float | None = None
    cpu_samples: int = 1000


def serving_budget_checks(
    bundle: ModelBundle,
    holdout: pd.DataFrame,
    budget: ServingBudget | None,
    *,
    samples: int,
    seed: int,
    p95_ms: float | None = None,
) -> list[Check]:
    """One check per limit ``budget`` sets; ``p95_ms`` is a p95 measured already, if any."""
    if budget is None:
        return []
    checks: list[Check] = []
    if budget.max_p95_ms is not None:
        p95 = p95_ms if p95_ms is not None else latency_p95_ms(bundle, holdout, samples, seed)
        checks.append(_check("p95", p95, "ms", budget.max_p95_ms))
    if budget.max_cpu_ms_per_1k is not None:
        cpu = cpu_ms_per_1k(bundle, holdout, budget.cpu_samples, seed)
        checks.append(_check("cpu", cpu, "ms per 1k predictions", budget.max_cpu_ms_per_1k))
    return checks


def cpu_ms_per_1k(bundle: ModelBundle, holdout: pd.DataFrame, samples: int, seed: int) -> float:
    """Process CPU ms per 1000 single-instance predictions (see the module doc)."""
    instances = request_instances(bundle, holdout, samples, seed)
    bundle.predict(instances[:1])  # warm-up: the first call pays for lazy initialisation
    started = time.process_time()
    for instance in instances:
        bundle.predict([instance])
    spent_s = time.process_time() - started
    return spent_s * 1000.0 / max(1, len(instances)) * 1000.0


def _check(what: str, value: float, unit: str, limit: float) -> Check:
    if value > limit:
        return Check(CHECK_NAME, False, f"{what} {value:.1f} {unit} > {limit:g}")
    return Check(CHECK_NAME, True, f"{what} {value:.1f} {unit} within {limit:g}")
