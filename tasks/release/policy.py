"""What a canary release is told (``CanaryPolicy``) and what it reports (steps, outcome)."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.release.analysis import CanaryLimits, StepAnalysis

__all__ = ["CanaryOutcome", "CanaryPolicy", "StepRecord"]


class CanaryPolicy(BaseModel):
    """How a candidate meets traffic: weights, analysis cadence, limits, tolerance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[float] = Field(
        default_factory=lambda: [10.0, 25.0, 50.0, 100.0],
        description="Canary traffic percentages, increasing, each in (0, 100].",
    )
    interval_s: float = Field(default=30.0, gt=0, description="One analysis window.")
    min_requests: int = Field(
        default=50, ge=1, description="Canary requests a window needs to judge."
    )
    limits: CanaryLimits = Field(default_factory=CanaryLimits)
    failure_limit: int = Field(
        default=0, ge=0, description="Failed windows tolerated before abort."
    )
    inconclusive_limit: int = Field(
        default=3, ge=0, description="Inconclusive windows tolerated per step before abort."
    )
    error_limit: int = Field(
        default=2, ge=0, description="Unreadable metrics tolerated in a row before abort."
    )
    watch_windows: int = Field(
        default=2, ge=0, description="Windows watched after promotion that can still roll back."
    )
    shadow: bool = Field(default=False, description="Score the canary on mirrored traffic only.")
    settle_timeout_s: float = Field(
        default=5.0, ge=0, description="Wait at most this long for the server to apply a step."
    )
    lease_ttl_s: float | None = Field(
        default=None, gt=0, description="Release lease; default max(60 s, 4 intervals)."
    )

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[float]) -> list[float]:
        if not steps or any(not 0 < s <= 100 for s in steps):
            raise ValueError("steps must be percentages in (0, 100]")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("steps must increase")
        return steps

    def lease_ttl(self) -> float:
        """Seconds a release lease lasts without renewal."""
        return self.lease_ttl_s or max(60.0, 4 * self.interval_s)


@dataclass(frozen=True)
class StepRecord:
    """One analysis window of a release."""

    step: int
    weight: float
    analysis: StepAnalysis
    elapsed_s: float
    phase: Literal["canary", "watch"] = "canary"  # watch: after promotion, can still roll back

    def row(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "step": self.step,
            "weight": self.weight,
            **self.analysis.row(),
        }


@dataclass
class CanaryOutcome:
    """How a release ended: ``promoted``, ``aborted`` (champion never changed) or
    ``rolled_back`` (promoted, then the watch window moved the champion back)."""

    model: str
    version: int
    previous_champion: int | None
    status: Literal["promoted", "aborted", "rolled_back"] = "aborted"
    reason: str = ""
    steps: list[StepRecord] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None

    @property
    def promoted(self) -> bool:
        return self.status == "promoted"
