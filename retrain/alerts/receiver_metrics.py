"""``GET /metrics`` of the alert receiver: what it decided, so Prometheus can watch the watcher.

- ``retrain_alert_decisions_total{action, decision}``: alerts decided since the receiver
  started, per action (retrain, rollback) and decision (submitted, folded, ignored,
  rolled_back, duplicate);
- ``retrain_alert_backlog``: alerts stored and waiting for a decision in this process.

Like ``/healthz`` it needs no credentials: counts only, nothing an alert said.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from retrain.alerts.dispatch import AlertDispatcher

__all__ = ["CONTENT_TYPE", "metrics_endpoint"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _DecisionCollector:
    def __init__(self, dispatcher: AlertDispatcher) -> None:
        self._dispatcher = dispatcher

    def collect(self) -> Iterator[Metric]:
        decisions = CounterMetricFamily(
            "retrain_alert_decisions",
            "Alerts decided since the receiver started, by action and decision.",
            labels=["action", "decision"],
        )
        for (action, state), count in sorted(self._dispatcher.decisions.items()):
            decisions.add_metric([action, state], count)
        backlog = GaugeMetricFamily(
            "retrain_alert_backlog",
            "Alerts stored and waiting for a decision.",
            value=self._dispatcher.backlog,
        )
        yield from (decisions, backlog)

    def describe(self) -> list[Any]:
        return []


def metrics_endpoint(dispatcher: AlertDispatcher) -> Any:
    """The route handler rendering ``dispatcher``'s counts in Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_DecisionCollector(dispatcher))

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE)

    return metrics
