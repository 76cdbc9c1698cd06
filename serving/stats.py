"""Per model, version and variant counters kept by the server, cheap enough for the hot path.

Everything is a cumulative counter or a cumulative histogram with fixed bucket edges, the same
shape Prometheus scrapes: a canary analysis takes two snapshots and subtracts them, whether the
snapshots come from this book (``GET /v1/models/<name>:stats``) or from PromQL.
Only the event loop thread writes here (predictions are computed on worker threads, counted
back on the loop), so plain integers need no lock. A request the server refuses (malformed,
over a limit, unauthenticated) counts nowhere: only answers and the model's own failures do.

Two views of the same traffic, kept apart on purpose: ``SeriesStats`` says what one model version
did (a canary that failed and the champion that then answered each count one request), while
``ClientStats`` says what the callers of a model received (that request counts once, as a
``fallback``). ``serving.metrics`` states how the two relate.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = [
    "LATENCY_EDGES_S",
    "OUTCOMES",
    "PREDICTION_EDGES",
    "ClientStats",
    "SeriesStats",
    "StatsBook",
    "latency_quantiles",
]

# Fine below 50 ms where the SLO lives, coarse above where only faults go.
LATENCY_EDGES_S: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
    0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0,
)  # fmt: skip
# Probabilities and loss fractions live in [0, 1]; twenty bins resolve a shift of 0.05.
PREDICTION_EDGES: tuple[float, ...] = tuple(round(i * 0.05, 2) for i in range(21))
# What a caller received: the picked variant's answer, another variant's answer, or a 5xx.
OUTCOMES: tuple[str, ...] = ("ok", "fallback", "error")


class SeriesStats:
    """Counters of one (model, version, variant) series."""

    __slots__ = (
        "errors",
        "feedback_correct",
        "feedback_count",
        "feedback_loss_sum",
        "instances",
        "latency_counts",
        "latency_sum",
        "model",
        "prediction_counts",
        "prediction_sum",
        "recent_latency",
        "requests",
        "variant",
        "version",
    )

    def __init__(self, model: str, version: int, variant: str) -> None:
        self.model, self.version, self.variant = model, version, variant
        self.requests = 0
        self.errors = 0
        self.instances = 0
        self.latency_counts = [0] * (len(LATENCY_EDGES_S) + 1)
        self.latency_sum = 0.0
        self.prediction_counts = [0] * (len(PREDICTION_EDGES) + 1)
        self.prediction_sum = 0.0
        self.feedback_count = 0
        self.feedback_loss_sum = 0.0
        self.feedback_correct = 0
        self.recent_latency: deque[float] = deque(maxlen=20_000)

    def observe(self, latency_s: float, predictions: Sequence[float]) -> None:
        """Count one answered request with its latency and predictions."""
        self.requests += 1
        self.latency_counts[bisect_left(LATENCY_EDGES_S, latency_s)] += 1
        self.latency_sum += latency_s
        self.recent_latency.append(latency_s)
        self.instances += len(predictions)
        for value in predictions:
            if math.isfinite(value):
                self.prediction_counts[bisect_left(PREDICTION_EDGES, value)] += 1
                self.prediction_sum += value

    def fail(self, latency_s: float) -> None:
        """Count one request the model failed to answer (a server-side error)."""
        self.requests += 1
        self.errors += 1
        self.latency_counts[bisect_left(LATENCY_EDGES_S, latency_s)] += 1
        self.latency_sum += latency_s
        self.recent_latency.append(latency_s)

    def feedback(self, predictions: Sequence[float], labels: Sequence[float]) -> None:
        """Score delayed labels against what this series predicted for them."""
        for pred, label in zip(predictions, labels, strict=False):
            self.feedback_count += 1
            self.feedback_loss_sum += (pred - label) ** 2
            self.feedback_correct += int((pred >= 0.5) == (label >= 0.5))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready cumulative counters (buckets are per bucket, not cumulative)."""
        return {
            "model": self.model,
            "version": self.version,
            "variant": self.variant,
            "requests": self.requests,
            "errors": self.errors,
            "instances": self.instances,
            "latency": {"counts": list(self.latency_counts), "sum": self.latency_sum},
            "predictions": {"counts": list(self.prediction_counts), "sum": self.prediction_sum},
            "feedback": {
                "count": self.feedback_count,
                "loss_sum": self.feedback_loss_sum,
                "correct": self.feedback_correct,
            },
        }


class ClientStats:
    """What the callers of one model received: one outcome per predict request the server
    accepted (never a refused one), with its latency from arrival to answer, fallback included."""

    __slots__ = ("latency_counts", "latency_sum", "model", "outcomes")

    def __init__(self, model: str) -> None:
        self.model = model
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.latency_counts = [0] * (len(LATENCY_EDGES_S) + 1)
        self.latency_sum = 0.0

    def record(self, outcome: str, latency_s: float) -> None:
        """Count one answered request: ``outcome`` is one of ``OUTCOMES``."""
        self.outcomes[outcome] += 1
        self.latency_counts[bisect_left(LATENCY_EDGES_S, latency_s)] += 1
        self.latency_sum += latency_s

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready cumulative counters (buckets are per bucket, not cumulative)."""
        return {
            "requests": dict(self.outcomes),
            "latency": {"counts": list(self.latency_counts), "sum": self.latency_sum},
        }


class StatsBook:
    """All series of one server, created on first use; a retired version's are dropped."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, int, str], SeriesStats] = {}
        self._clients: dict[str, ClientStats] = {}

    def series(self, model: str, version: int, variant: str) -> SeriesStats:
        """The series for ``(model, version, variant)``, created if new."""
        key = (model, version, variant)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = SeriesStats(model, version, variant)
        return found

    def __iter__(self) -> Iterator[SeriesStats]:
        return iter(list(self._series.values()))

    def drop_version(self, model: str, version: int) -> int:
        """Forget every series of ``model`` ``version`` (it is no longer served); how many.
        Served again later, it starts from zero: a new series to Prometheus."""
        keys = [k for k in list(self._series) if k[0] == model and k[1] == version]
        for key in keys:
            del self._series[key]
        return len(keys)

    def client(self, model: str) -> ClientStats:
        """What the callers of ``model`` received, created if new."""
        found = self._clients.get(model)
        if found is None:
            found = self._clients[model] = ClientStats(model)
        return found

    def clients(self) -> list[ClientStats]:
        """Every model's client counters recorded so far."""
        return list(self._clients.values())

    def snapshot(self, model: str, *, recent: bool = False) -> dict[str, Any]:
        """Cumulative counters of every series of ``model`` plus the bucket edges.

        ``recent`` adds exact p50/p95/p99 of the last 20,000 latencies of each series.
        ``client`` holds what the model's callers received (``ClientStats.as_dict``).
        """
        series = []
        for s in self:
            if s.model != model:
                continue
            entry = s.as_dict()
            if recent:
                entry["recent_latency_s"] = latency_quantiles(list(s.recent_latency))
            series.append(entry)
        client = self._clients.get(model) or ClientStats(model)  # never stored for a mere read
        return {
            "latency_edges": list(LATENCY_EDGES_S),
            "prediction_edges": list(PREDICTION_EDGES),
            "series": series,
            "client": client.as_dict(),
        }

    def reset_recent(self) -> None:
        """Forget recent latencies (benchmarks start a clean window)."""
        for s in self:
            s.recent_latency.clear()


def latency_quantiles(values: list[float]) -> dict[str, float | int | None]:
    """Count and exact p50/p95/p99 of ``values`` (sorted in place); None when empty."""
    values.sort()
    n = len(values)

    def at(q: float) -> float | None:
        return values[min(n - 1, int(q * n))] if n else None

    return {"count": n, "p50": at(0.50), "p95": at(0.95), "p99": at(0.99)}
