"""Canary analysis: compare canary with champion over one window, Argo-Rollouts style.

Metrics come as cumulative counters per model version from a ``MetricsSource`` (the server's
own stats, in-process or over HTTP, or Prometheus via PromQL); a window is the difference of two
snapshots. Each check answers success, failure or inconclusive; the step's verdict is failure if
any check failed, inconclusive if there was too little traffic to judge, success otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tasks.release.metric_sources import VersionCounters

__all__ = ["CanaryLimits", "Check", "StepAnalysis", "Verdict", "analyse_window", "ks_distance"]

Verdict = Literal["success", "failure", "inconclusive"]


class CanaryLimits(BaseModel):
    """Thresholds a canary must stay within at every step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_error_rate: float = Field(default=0.01, ge=0, le=1, description="Canary error rate cap.")
    max_latency_ratio: float = Field(
        default=1.5, gt=0, description="Canary p95 / champion p95 cap."
    )
    latency_slack_s: float = Field(
        default=0.025, ge=0, description="A ratio breach counts only when this much slower too."
    )
    max_p95_latency_s: float | None = Field(
        default=None, gt=0, description="Absolute canary p95 cap in seconds, if set."
    )
    max_prediction_shift: float = Field(
        default=0.2, gt=0, le=1, description="KS distance cap, canary vs champion predictions."
    )
    max_online_loss_increase: float = Field(
        default=0.05, ge=0, description="Squared-error increase on feedback labels allowed."
    )
    min_feedback: int = Field(
        default=50, ge=1, description="Labels per side before the online check runs."
    )


@dataclass(frozen=True)
class Check:
    """One metric's verdict in one window."""

    name: str
    verdict: Verdict | Literal["skipped"]
    value: float | None
    limit: float | None
    detail: str


@dataclass(frozen=True)
class StepAnalysis:
    """The verdict of one analysis window and the checks behind it."""

    verdict: Verdict
    checks: list[Check]
    canary_requests: int
    champion_requests: int
    reasons: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        """A flat row for tables and event payloads."""
        out: dict[str, Any] = {
            "verdict": self.verdict,
            "canary_requests": self.canary_requests,
            "champion_requests": self.champion_requests,
        }
        for check in self.checks:
            out[check.name] = None if check.value is None else round(check.value, 6)
        return out


def ks_distance(a: Sequence[int], b: Sequence[int]) -> float:
    """Largest gap between the two histograms' cumulative distributions (0..1)."""
    na, nb = sum(a), sum(b)
    if na == 0 or nb == 0:
        return 0.0
    ca = cb = 0
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        ca += x
        cb += y
        worst = max(worst, abs(ca / na - cb / nb))
    return worst


def _latency_check(canary: VersionCounters, base: VersionCounters, lim: CanaryLimits) -> Check:
    p95 = canary.latency_p95()
    base_p95 = base.latency_p95()
    if p95 is None:
        return Check("p95_latency_s", "inconclusive", None, None, "no canary latencies")
    if lim.max_p95_latency_s is not None and p95 > lim.max_p95_latency_s:
        return Check(
            "p95_latency_s", "failure", p95, lim.max_p95_latency_s, "above the absolute ceiling"
        )
    if base_p95 is None:
        return Check("p95_latency_s", "success", p95, lim.max_p95_latency_s, "no baseline")
    ceiling = max(base_p95 * lim.max_latency_ratio, base_p95 + lim.latency_slack_s)
    verdict: Verdict = "failure" if p95 > ceiling else "success"
    return Check("p95_latency_s", verdict, p95, ceiling, f"champion p95 {base_p95:.4f}s")


def _shift_check(canary: VersionCounters, base: VersionCounters, lim: CanaryLimits) -> Check:
    n, m = sum(canary.prediction_counts), sum(base.prediction_counts)
    if n == 0 or m == 0:
        return Check("prediction_shift", "skipped", None, None, "no predictions to compare")
    distance = ks_distance(canary.prediction_counts, base.prediction_counts)
    # Below the 1% critical value of the two-sample KS test a gap is sampling noise.
    noise = 1.63 * math.sqrt((n + m) / (n * m))
    ceiling = max(lim.max_prediction_shift, noise)
    verdict: Verdict = "failure" if distance > ceiling else "success"
    return Check("prediction_shift", verdict, distance, ceiling, f"KS over {n} vs {m} predictions")


def _online_check(canary: VersionCounters, base: VersionCounters, lim: CanaryLimits) -> Check:
    if canary.feedback_count < lim.min_feedback or base.feedback_count < lim.min_feedback:
        return Check("online_loss_delta", "skipped", None, None, "too few feedback labels")
    delta = canary.online_loss() - base.online_loss()  # type: ignore[operator]  # counts > 0
    verdict: Verdict = "failure" if delta > lim.max_online_loss_increase else "success"
    return Check("online_loss_delta", verdict, delta, lim.max_online_loss_increase, "squared error")


def analyse_window(
    canary: VersionCounters,
    champion: VersionCounters,
    limits: CanaryLimits,
    *,
    min_requests: int,
    champion_baseline: VersionCounters | None = None,
) -> StepAnalysis:
    """Judge one window. ``champion_baseline`` stands in when the champion got too little traffic
    in this window (e.g. at 100%), typically the champion's counters since the release began."""
    base = champion
    if champion.requests < min_requests and champion_baseline is not None:
        base = champion_baseline
    checks: list[Check] = []
    broken = canary.incomplete or base.incomplete
    if broken:  # a window that cannot be measured is not judged, and never crashes the release
        checks.append(Check("metrics", "inconclusive", None, None, broken))
    elif canary.requests < min_requests:
        checks.append(
            Check("requests", "inconclusive", canary.requests, min_requests, "too little traffic")
        )
    else:
        rate = canary.error_rate()
        verdict: Verdict = "failure" if rate > limits.max_error_rate else "success"
        checks.append(Check("error_rate", verdict, rate, limits.max_error_rate, "canary errors"))
        checks.append(_latency_check(canary, base, limits))
        checks.append(_shift_check(canary, base, limits))
        checks.append(_online_check(canary, base, limits))
    failed = [c for c in checks if c.verdict == "failure"]
    if failed:
        overall: Verdict = "failure"
    elif any(c.verdict == "inconclusive" for c in checks):
        overall = "inconclusive"
    else:
        overall = "success"
    reasons = [
        f"{c.name}={c.value:.4g} over {c.limit:.4g} ({c.detail})"
        for c in failed
        if c.value is not None and c.limit is not None
    ]
    if overall == "inconclusive":  # say why the window could not be judged
        reasons = [f"{c.name}: {c.detail}" for c in checks if c.verdict == "inconclusive"]
    return StepAnalysis(overall, checks, canary.requests, champion.requests, reasons)
