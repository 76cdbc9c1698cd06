"""``GET /metrics``: the stats book rendered in Prometheus text format at scrape time.

The hot path only bumps plain integers in ``StatsBook``; this collector turns them into
Prometheus families when scraped, so serving a request never touches prometheus_client locks.
A refused request (malformed, over a limit, unauthenticated: any 4xx) moves no series here.

What clients received, one sample per accepted predict request (labels ``model``, ``outcome``):

- ``retrain_client_requests_total{outcome="ok"}``: answered (200) by the variant it was routed to.
- ``retrain_client_requests_total{outcome="fallback"}``: the routed variant (a canary) failed and
  another (the champion) answered: still a 200.
- ``retrain_client_requests_total{outcome="error"}``: the caller got a 5xx (every variant that
  tried failed, or the model has no champion loaded).
- ``retrain_client_latency_seconds``: arrival to answer in the handler, a fallback included.

What each model version did (labels ``model``, ``version``, ``variant``), for canary analysis:

- ``retrain_predict_requests_total``: attempts by that version, answered or failed; a fallback
  request counts once for the failed canary and once for the champion that answered it.
- ``retrain_predict_errors_total``: attempts that version failed (its own 5xx-worthy failure).
- ``retrain_predict_latency_seconds``, ``retrain_prediction_value``, ``retrain_feedback_*``.
- ``retrain_predict_cpu_seconds_total`` (labels ``model``, ``version``): CPU seconds spent
  scoring (``serving.cpu_cost``); per 1000 predictions with ``retrain_prediction_value_count``.

How they add up, per model: ``sum(client ok + fallback)`` is the number of 200 answers, and
equals ``sum(predict requests - predict errors)`` over the champion and canary variants (every
200 is exactly one successful attempt); each ``fallback`` adds one canary error besides; each
client ``error`` is one or two failed attempts (none while no champion is loaded). Shadow
scoring never reaches a client and shows only under ``variant="shadow"``. Alert on what callers
saw, the error ratio being
``sum by (model) (rate(retrain_client_requests_total{outcome="error"}[5m]))
/ sum by (model) (rate(retrain_client_requests_total[5m]))``; judge a version with the
per-version counters (a canary whose failures the champion hides is still a bad canary).

``retrain_route_weight`` lists only the versions routed now. A version out of use (in no route,
no alias on it) keeps its per-version series (and ``retrain_bundle_load_failures_total``) for
``ServeLimits.retired_series_grace_s`` (the
canary analysis's last window, a Prometheus ``increase()``), then they are dropped
(``serving.retirement``); if it is served again later, its series start anew from zero.
Client series are per model and stay: zero for every routed model from the first scrape.
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

from serving.cpu_cost import CpuBook
from serving.stats import LATENCY_EDGES_S, OUTCOMES, PREDICTION_EDGES, ClientStats, StatsBook

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

    def __init__(
        self,
        book: StatsBook,
        routes: RoutesFn,
        load_failures: LoadFailuresFn,
        *,
        cpu: CpuBook | None = None,
    ) -> None:
        self._book, self._routes, self._load_failures = book, routes, load_failures
        self._cpu = cpu

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
        routes = self._routes()
        for model, version, variant, share in routes:
            weight.add_metric([model, str(version), variant], share)
        failures = CounterMetricFamily(
            "retrain_bundle_load_failures",
            "Bundles that failed to load and were not swapped in.",
            labels=["model", "version"],
        )
        for (model, version), count in self._load_failures().items():
            failures.add_metric([model, str(version)], count)
        yield from self._client_families({route[0] for route in routes})
        yield from (requests, errors, latency, predictions, feedback, loss, correct)
        if self._cpu is not None:  # retrain_predict_cpu_seconds_total (serving.cpu_cost)
            yield self._cpu.family()
        yield from (weight, failures)

    def _client_families(self, routed: set[str]) -> Iterator[Metric]:
        """What callers received per model: every routed model from zero, so a rate is defined
        before its first request."""
        outcomes = CounterMetricFamily(
            "retrain_client_requests",
            "Predict requests by what the client received: ok, fallback (200), error (5xx).",
            labels=["model", "outcome"],
        )
        latency = HistogramMetricFamily(
            "retrain_client_latency_seconds",
            "End-to-end predict latency as the client saw it, a fallback included.",
            labels=["model"],
        )
        clients = {c.model: c for c in self._book.clients()}
        for model in sorted(routed | set(clients)):
            stats = clients.get(model) or ClientStats(model)
            for outcome in OUTCOMES:
                outcomes.add_metric([model, outcome], stats.outcomes[outcome])
            latency.add_metric(
                [model], _buckets(LATENCY_EDGES_S, stats.latency_counts), stats.latency_sum
            )
        yield from (outcomes, latency)

    def describe(self) -> list[Any]:
        return []  # collected lazily: nothing to describe up front


def render_metrics(collector: ServerCollector) -> bytes:
    """The Prometheus text exposition of ``collector``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
