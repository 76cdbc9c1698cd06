"""Canary analysis verdicts on real server counters, and Prometheus reading the same numbers.

No server and no clock: ``retrain.testing.window_counters`` records each window through the
server's own ``StatsBook``, and Prometheus is an ``httpx.MockTransport``.
"""

from __future__ import annotations

import re
from collections import defaultdict

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from retrain.testing import window_counters
from serving.metrics import ServerCollector, render_metrics
from serving.stats import StatsBook
from tasks.release.analysis import CanaryLimits, analyse_window, ks_distance
from tasks.release.metric_sources import (
    MetricsSnapshot,
    PrometheusSource,
    VersionCounters,
    histogram_quantile,
)

LIMITS = CanaryLimits(min_feedback=20)
_counters = window_counters  # counters of n requests, exactly as the server records them


def test_too_little_traffic_is_inconclusive() -> None:
    result = analyse_window(_counters(5), _counters(200), LIMITS, min_requests=20)
    assert result.verdict == "inconclusive"


def test_a_healthy_canary_succeeds() -> None:
    result = analyse_window(_counters(100), _counters(300), LIMITS, min_requests=20)
    assert result.verdict == "success", result.reasons


@pytest.mark.parametrize(
    ("canary", "metric"),
    [
        (_counters(100, errors=5), "error_rate"),
        (_counters(100, latency_s=0.204), "p95_latency_s"),
        (_counters(100, prediction=0.7), "prediction_shift"),
        (_counters(100, labels=40, label_value=1.0), "online_loss_delta"),
    ],
    ids=["errors", "latency", "shift", "online-metric"],
)
def test_each_breach_fails_and_names_its_metric(canary: VersionCounters, metric: str) -> None:
    champion = _counters(300, labels=40, label_value=0.3)
    result = analyse_window(canary, champion, LIMITS, min_requests=20)
    assert result.verdict == "failure"
    assert any(reason.startswith(metric) for reason in result.reasons), result.reasons


def test_online_metric_waits_for_enough_labels() -> None:
    champion = _counters(300, labels=40, label_value=0.3)
    canary = _counters(100, labels=5, label_value=1.0)
    result = analyse_window(canary, champion, LIMITS, min_requests=20)
    assert result.verdict == "success"
    assert {c.name: c.verdict for c in result.checks}["online_loss_delta"] == "skipped"


def test_champion_baseline_stands_in_at_full_canary_weight() -> None:
    slow = _counters(100, latency_s=0.204)
    result = analyse_window(
        slow, VersionCounters(), LIMITS, min_requests=20, champion_baseline=_counters(300)
    )
    assert result.verdict == "failure"


def test_histogram_helpers() -> None:
    edges = (0.1, 0.2, 0.3)
    assert histogram_quantile(0.5, edges, [0, 10, 0, 0]) == pytest.approx(0.15)
    assert histogram_quantile(0.95, edges, []) is None
    assert ks_distance([10, 0], [0, 10]) == 1.0
    assert ks_distance([5, 5], [5, 5]) == 0.0


def _fake_prometheus(exposition: str) -> httpx.MockTransport:
    """Answers the instant ``sum by (...) (metric{model="..."})`` queries PrometheusSource sends."""
    samples = [s for family in text_string_to_metric_families(exposition) for s in family.samples]
    pattern = re.compile(r'sum by \(([\w, ]+)\) \((\w+)\{model="([\w-]+)"\}\)')

    def handler(request: httpx.Request) -> httpx.Response:
        match = pattern.fullmatch(request.url.params["query"])
        assert match is not None, request.url.params["query"]
        by = [b.strip() for b in match.group(1).split(",")]
        sums: dict[tuple[str, ...], float] = defaultdict(float)
        for s in samples:
            if s.name == match.group(2) and s.labels.get("model") == match.group(3):
                sums[tuple(s.labels[b] for b in by)] += s.value
        result = [
            {"metric": dict(zip(by, key, strict=True)), "value": [0, repr(value)]}
            for key, value in sums.items()
        ]
        return httpx.Response(200, json={"status": "success", "data": {"result": result}})

    return httpx.MockTransport(handler)


def test_prometheus_source_reads_what_the_server_counts() -> None:
    book = StatsBook()
    for version, variant in ((1, "champion"), (2, "canary")):
        series = book.series("loans", version, variant)
        for i in range(50):
            series.observe(0.001 * (i % 9 + 1) * version, [0.1 * (i % 10)])
        series.fail(0.3)
        series.feedback([0.2, 0.9], [0.0, 1.0])
    collector = ServerCollector(book, lambda: [], lambda: {})
    exposition = render_metrics(collector).decode()
    source = PrometheusSource("http://prometheus.test", transport=_fake_prometheus(exposition))
    via_prometheus = source.snapshot("loans")
    direct = MetricsSnapshot.from_server_stats(book.snapshot("loans"))
    for version in (1, 2):
        assert via_prometheus.get(version) == direct.get(version)
