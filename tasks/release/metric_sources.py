"""Where canary analysis reads its numbers: one interface, the server's stats or Prometheus.

A source returns *cumulative* counters per model version; the analysis subtracts two
snapshots to get a window, exactly as PromQL's ``increase()`` would.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import httpx

from registry.errors import ConfigError, MetricsUnavailableError

__all__ = [
    "MetricsSnapshot",
    "MetricsSource",
    "PrometheusSource",
    "ServerStatsSource",
    "VersionCounters",
    "histogram_quantile",
]


def histogram_quantile(q: float, edges: Sequence[float], counts: Sequence[int]) -> float | None:
    """The ``q`` quantile of a bucketed histogram (last bucket is +Inf), as Prometheus does."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    running = 0.0
    for i, count in enumerate(counts):
        if count > 0 and running + count >= rank:
            if i >= len(edges):
                return float(edges[-1])
            lower = 0.0 if i == 0 else float(edges[i - 1])
            return lower + (float(edges[i]) - lower) * (rank - running) / count
        running += count
    return float(edges[-1])


def _sub(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...] | None:
    """``a - b`` bucket by bucket; None when the two do not line up (a series missing from one
    snapshot after a failed scrape, a server restart that reset its buckets)."""
    if not b:
        return tuple(a)
    if len(a) != len(b):
        return None
    return tuple(max(0, x - y) for x, y in zip(a, b, strict=True))


def _add(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    if not a or not b:
        return tuple(a or b)
    if len(a) != len(b):  # histograms of different layouts cannot be merged: keep the first
        return tuple(a)
    return tuple(x + y for x, y in zip(a, b, strict=True))


@dataclass(frozen=True)
class VersionCounters:
    """Cumulative (or windowed) counters of one model version, all variants together."""

    requests: int = 0
    errors: int = 0
    latency_edges: tuple[float, ...] = ()
    latency_counts: tuple[int, ...] = ()
    prediction_counts: tuple[int, ...] = ()
    feedback_count: int = 0
    feedback_loss_sum: float = 0.0
    incomplete: str | None = None
    """Why this window cannot be judged (series missing or reset between snapshots), if so."""

    def __sub__(self, other: VersionCounters) -> VersionCounters:
        latency = _sub(self.latency_counts, other.latency_counts)
        predictions = _sub(self.prediction_counts, other.prediction_counts)
        reset = self.requests < other.requests
        incomplete = self.incomplete or other.incomplete
        if latency is None or predictions is None or reset or _unscraped(self, other):
            incomplete = incomplete or (
                "counters went backwards (server restarted?)"
                if reset
                else "a histogram series is missing from one snapshot (failed scrape?)"
            )
        return replace(
            self,
            requests=max(0, self.requests - other.requests),
            errors=max(0, self.errors - other.errors),
            latency_counts=latency or (),
            prediction_counts=predictions or (),
            feedback_count=max(0, self.feedback_count - other.feedback_count),
            feedback_loss_sum=max(0.0, self.feedback_loss_sum - other.feedback_loss_sum),
            incomplete=incomplete,
        )

    def __add__(self, other: VersionCounters) -> VersionCounters:
        return replace(
            self,
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            latency_edges=self.latency_edges or other.latency_edges,
            latency_counts=_add(self.latency_counts, other.latency_counts),
            prediction_counts=_add(self.prediction_counts, other.prediction_counts),
            feedback_count=self.feedback_count + other.feedback_count,
            feedback_loss_sum=self.feedback_loss_sum + other.feedback_loss_sum,
            incomplete=self.incomplete or other.incomplete,
        )

    def error_rate(self) -> float:
        """Failed requests over all requests (0 with no requests)."""
        return self.errors / self.requests if self.requests else 0.0

    def latency_p95(self) -> float | None:
        """p95 latency in seconds from the histogram, None with no requests."""
        return histogram_quantile(0.95, self.latency_edges, self.latency_counts)

    def online_loss(self) -> float | None:
        """Mean squared error on feedback labels, None without labels."""
        return self.feedback_loss_sum / self.feedback_count if self.feedback_count else None


def _unscraped(later: VersionCounters, earlier: VersionCounters) -> bool:
    """Whether ``earlier`` had traffic but lacks a histogram ``later`` has: not "no data yet"
    but a series that one scrape did not return."""
    if earlier.requests == 0:
        return False
    lost_latency = bool(later.latency_counts) and not earlier.latency_counts
    answered = earlier.requests > earlier.errors
    lost_predictions = answered and bool(later.prediction_counts) and not earlier.prediction_counts
    return lost_latency or lost_predictions


@dataclass(frozen=True)
class MetricsSnapshot:
    """Counters per version at one moment, plus what the server says it routes (if known)."""

    versions: dict[int, VersionCounters]
    routing: dict[str, Any] | None = None
    load_errors: dict[int, str] = field(default_factory=dict)
    taken_at: float = field(default_factory=time.monotonic)
    instance: str | None = None
    """Which server process counted (None: a source that cannot tell)."""

    def get(self, version: int) -> VersionCounters:
        """Counters of ``version`` (zeros if it saw no traffic)."""
        return self.versions.get(version, VersionCounters())

    def since(self, earlier: MetricsSnapshot, version: int) -> VersionCounters:
        """What ``version`` did between ``earlier`` and this snapshot; unmeasurable when the
        two come from different server processes (its counters restarted in between)."""
        window = self.get(version) - earlier.get(version)
        restarted = (
            None not in (self.instance, earlier.instance) and self.instance != earlier.instance
        )
        if restarted and window.incomplete is None:
            return replace(window, incomplete="the model server restarted (counters reset)")
        return window

    @classmethod
    def from_server_stats(cls, stats: dict[str, Any]) -> MetricsSnapshot:
        """Parse the JSON of ``GET /v1/models/<name>:stats``."""
        edges = tuple(float(e) for e in stats.get("latency_edges", ()))
        versions: dict[int, VersionCounters] = {}
        for s in stats.get("series", []):
            counters = VersionCounters(
                requests=int(s["requests"]),
                errors=int(s["errors"]),
                latency_edges=edges,
                latency_counts=tuple(int(c) for c in s["latency"]["counts"]),
                prediction_counts=tuple(int(c) for c in s["predictions"]["counts"]),
                feedback_count=int(s["feedback"]["count"]),
                # The server writes a non-finite sum as null; such a window cannot be judged.
                feedback_loss_sum=float(s["feedback"]["loss_sum"] or 0.0),
                incomplete=None
                if s["feedback"]["loss_sum"] is not None
                else "the server reports no finite feedback loss",
            )
            version = int(s["version"])
            versions[version] = versions[version] + counters if version in versions else counters
        load_errors = {int(v): str(m) for v, m in stats.get("load_errors", {}).items()}
        instance = stats.get("instance")
        return cls(
            versions,
            stats.get("routing"),
            load_errors,
            instance=str(instance) if instance is not None else None,
        )


class MetricsSource(Protocol):
    """Anything that can snapshot a model's cumulative counters per version."""

    def snapshot(self, model: str) -> MetricsSnapshot: ...


class ServerStatsSource:
    """Reads the model server's own stats over HTTP (the embedded default); ``token`` is the
    server's bearer token (``RETRAIN_SERVE_TOKEN``) when it requires one."""

    def __init__(self, base_url: str, *, timeout_s: float = 5.0, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout_s, headers=headers
        )

    def snapshot(self, model: str) -> MetricsSnapshot:
        try:
            response = self._client.get(f"/v1/models/{model}:stats")
            response.raise_for_status()
            return MetricsSnapshot.from_server_stats(response.json())
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise MetricsUnavailableError(f"model server stats unreadable: {exc}") from exc

    def close(self) -> None:
        self._client.close()


class PrometheusSource:
    """Reads the server's metrics through Prometheus' HTTP API (instant PromQL queries)."""

    def __init__(
        self, url: str, *, timeout_s: float = 5.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"Prometheus URL must start with http:// or https://, got {url!r}")
        self._client = httpx.Client(
            base_url=url.rstrip("/"), timeout=timeout_s, transport=transport
        )

    def _query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        try:
            response = self._client.get("/api/v1/query", params={"query": promql})
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise MetricsUnavailableError(f"Prometheus query failed: {exc}") from exc
        if body.get("status") != "success":
            raise MetricsUnavailableError(f"Prometheus refused {promql!r}: {body.get('error')}")
        return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]

    def _by_version(self, metric: str, model: str) -> dict[int, float]:
        rows = self._query(f'sum by (version) ({metric}{{model="{model}"}})')
        return {int(labels["version"]): value for labels, value in rows}

    def _buckets(self, metric: str, model: str) -> tuple[tuple[float, ...], dict[int, list[int]]]:
        rows = self._query(f'sum by (version, le) ({metric}_bucket{{model="{model}"}})')
        cumulative: dict[int, dict[float, float]] = {}
        for labels, value in rows:
            cumulative.setdefault(int(labels["version"]), {})[float(labels["le"])] = value
        edges = tuple(
            sorted({le for per in cumulative.values() for le in per if le != float("inf")})
        )
        counts: dict[int, list[int]] = {}
        for version, per in cumulative.items():
            running = [per.get(le, 0.0) for le in (*edges, float("inf"))]
            counts[version] = [
                round(c - (running[i - 1] if i else 0.0)) for i, c in enumerate(running)
            ]
        return edges, counts

    def snapshot(self, model: str) -> MetricsSnapshot:
        requests = self._by_version("retrain_predict_requests_total", model)
        errors = self._by_version("retrain_predict_errors_total", model)
        labels = self._by_version("retrain_feedback_labels_total", model)
        loss = self._by_version("retrain_feedback_squared_error_total", model)
        edges, latency = self._buckets("retrain_predict_latency_seconds", model)
        _, predictions = self._buckets("retrain_prediction_value", model)
        versions = {
            v: VersionCounters(
                requests=int(requests.get(v, 0)),
                errors=int(errors.get(v, 0)),
                latency_edges=edges,
                latency_counts=tuple(latency.get(v, ())),
                prediction_counts=tuple(predictions.get(v, ())),
                feedback_count=int(labels.get(v, 0)),
                feedback_loss_sum=loss.get(v, 0.0),
            )
            for v in set(requests) | set(latency)
        }
        return MetricsSnapshot(versions)

    def close(self) -> None:
        self._client.close()
