"""``GET /metrics``: the stats book rendered in Prometheus text format at scrape time.

The hot path only bumps plain integers in ``StatsBook``; this collector turns them into
Prometheus families when scraped, so serving a request never touches prometheus_client locks.
A refused request (malformed, over a limit, unauthenticated) moves no series here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from serving.stats import LATENCY_EDGES_S, PREDICTION_EDGES, StatsBook

__all__ = ["CONTENT_TYPE", "LABELS", "ServerCollector", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LABELS = ["model", "version", "variant"]

# (model, version, variant, weight) of what is routed now, and load failures per (model, version)
RoutesFn = Callable[[], list[tuple[str, int, str, float]]]
LoadFailuresFn = Callable[[], dict[tuple[str, int], int]]


def _buckets(edges: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    running = 0
    for edge, count in zip([*map(str, edges), "+Inf"], counts, strict=True):
        running += count
        out.append((edge, float(running)))
    return out


class ServerCollector:
    """A prometheus_client collector over one server's ``StatsBook`` and routing table."""

    def __init__(self, book: StatsBook, routes: RoutesFn, load_failures: LoadFailuresFn) -> None:
        self._book, self._routes, self._load_failures = book, routes, load_failures

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "retrain_predict_requests", "Predict requests answered or failed.", labels=LABELS
        )
        errors = CounterMetricFamily(
            "retrain_predict_errors", "Predict requests the model failed (5xx).", labels=LABELS
        )
        latency = HistogramMetricFamily(
            "retrain_predict_latency_seconds", "Server-side predict latency.", labels=LABELS
        )
        predictions = HistogramMetricFamily(
            "retrain_prediction_value", "Distribution of predicted values.", labels=LABELS
        )
        feedback = CounterMetricFamily(
            "retrain_feedback_labels", "Delayed labels received.", labels=LABELS
        )
        loss = CounterMetricFamily(
            "retrain_feedback_squared_error", "Sum of squared error on labels.", labels=LABELS
        )
        correct = CounterMetricFamily(
            "retrain_feedback_correct", "Labels matched at threshold 0.5.", labels=LABELS
        )
        for s in self._book:
            lv = [s.model, str(s.version), s.variant]
            requests.add_metric(lv, s.requests)
            errors.add_metric(lv, s.errors)
            latency.add_metric(lv, _buckets(LATENCY_EDGES_S, s.latency_counts), s.latency_sum)
            predictions.add_metric(
                lv, _buckets(PREDICTION_EDGES, s.prediction_counts), s.prediction_sum
            )
            feedback.add_metric(lv, s.feedback_count)
            loss.add_metric(lv, s.feedback_loss_sum)
            correct.add_metric(lv, s.feedback_correct)
        weight = GaugeMetricFamily(
            "retrain_route_weight", "Percent of traffic routed to a version.", labels=LABELS
        )
        for model, version, variant, share in self._routes():
            weight.add_metric([model, str(version), variant], share)
        failures = CounterMetricFamily(
            "retrain_bundle_load_failures",
            "Bundles that failed to load and were not swapped in.",
            labels=["model", "version"],
        )
        for (model, version), count in self._load_failures().items():
            failures.add_metric([model, str(version)], count)
        yield from (requests, errors, latency, predictions, feedback, loss, correct)
        yield from (weight, failures)

    def describe(self) -> list[Any]:
        return []  # collected lazily: nothing to describe up front


def render_metrics(collector: ServerCollector) -> bytes:
    """The Prometheus text exposition of ``collector``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
