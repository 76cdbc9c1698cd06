"""CPU time each model version spends predicting, for ``GET /metrics``.

``cpu_timed(func, *args)`` runs the scoring call and measures the CPU time of the thread that
ran it (``time.thread_time``): the event loop's thread for a small batch, a prediction thread
for a large one. Only that thread is counted: torch's own intra-op threads, which a large
batch may use, are not. A refused request (4xx: a malformed body, an instance missing a
feature) counts nothing; a prediction the model failed (non-finite) counts what it spent.

``CpuBook`` keeps the seconds per (model, version) and exports them as the counter
``retrain_predict_cpu_seconds_total{model,version}``, shadow scoring included (it is that
version's cost too). CPU ms per 1000 predictions is then
``1e6 * sum by (model, version) (rate(retrain_predict_cpu_seconds_total[5m]))
/ sum by (model, version) (rate(retrain_prediction_value_count[5m]))``, recorded as
``model_version:retrain_predict_cpu_ms_per_1k:rate5m`` (``retrain alerts rules``). A version
whose per-version series were retired loses its CPU series with them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from prometheus_client.core import CounterMetricFamily

__all__ = ["CPU_METRIC", "CpuBook", "cpu_timed"]

CPU_METRIC = "retrain_predict_cpu_seconds"
T = TypeVar("T")


def cpu_timed(func: Callable[..., T], *args: Any) -> tuple[T, float]:
    """``(func(*args), CPU seconds the calling thread spent in it)``; raises what it raises."""
    started = time.thread_time()
    result = func(*args)
    return result, max(0.0, time.thread_time() - started)


class CpuBook:
    """Prediction CPU seconds per (model, version), bumped on the event loop only."""

    def __init__(self) -> None:
        self._seconds: dict[tuple[str, int], float] = {}

    def add(self, model: str, version: int, seconds: float) -> None:
        key = (model, version)
        self._seconds[key] = self._seconds.get(key, 0.0) + seconds

    def keep_only(self, versions: Iterable[tuple[str, int]]) -> None:
        """Drop the versions not in ``versions`` (their other series were retired)."""
        kept = set(versions)
        for key in [k for k in self._seconds if k not in kept]:
            del self._seconds[key]

    def family(self) -> CounterMetricFamily:
        counter = CounterMetricFamily(
            CPU_METRIC,
            "CPU seconds spent predicting, by the thread that scored (shadow included).",
            labels=["model", "version"],
        )
        for (model, version), seconds in sorted(self._seconds.items()):
            counter.add_metric([model, str(version)], seconds)
        return counter
