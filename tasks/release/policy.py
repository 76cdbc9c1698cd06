"""What a release is told (``ReleasePolicy``: canary, shadow or gate; ``CanaryPolicy``: steps,
windows, limits) and what it reports (steps, outcome)."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.release.analysis import CanaryLimits, StepAnalysis

__all__ = [
    "RELEASE_MODES",
    "CanaryOutcome",
    "CanaryPolicy",
    "ReleasePolicy",
    "ReleaseStatus",
    "StepRecord",
]

RELEASE_MODES = ("canary", "shadow", "gate")


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
    windows_per_step: int = Field(
        default=1, ge=1, description="Successful windows each step needs before the next."
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


class ReleasePolicy(BaseModel):
    """How a candidate that passed the gate becomes champion; a spec's ``release``.

    - ``canary`` (default): live traffic in the canary policy's steps, analysed at each;
    - ``shadow``: the candidate scores a mirror of all traffic for ``shadow_windows`` windows
      (the champion answers every request) and is promoted only if every window passes;
    - ``gate``: promoted as soon as the gate passes, with no model server (batch scoring).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["canary", "shadow", "gate"] = Field(
        default="canary", description="canary (default), shadow or gate."
    )
    shadow_windows: int = Field(
        default=4, ge=1, le=1000, description="Passing windows a shadow release needs."
    )

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        """``release: shadow`` means ``release: {mode: shadow}``; an unknown mode is one line."""
        if isinstance(data, str):
            data = {"mode": data}
        mode = data.get("mode") if isinstance(data, dict) else None
        if isinstance(mode, str) and mode not in RELEASE_MODES:
            raise ValueError(
                f"unknown release mode {mode!r}: use canary (live traffic in steps), "
                "shadow (mirrored traffic) or gate (promote when the gate passes)"
            )
        return data

    def canary_policy(self, canary: CanaryPolicy) -> CanaryPolicy:
        """The canary policy this mode runs: ``canary`` as given; ``shadow`` mirrors 100% of
        traffic to the candidate for ``shadow_windows`` passing windows (same limits and
        cadence); ``gate`` runs none (the caller promotes at once)."""
        if self.mode != "shadow":
            return canary
        return canary.model_copy(
            update={"steps": [100.0], "shadow": True, "windows_per_step": self.shadow_windows}
        )


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


ReleaseStatus = Literal["promoted", "aborted", "rolled_back", "not_released"]


@dataclass
class CanaryOutcome:
    """How a release ended: ``promoted``, ``aborted`` (champion never changed, candidate
    rejected), ``rolled_back`` (promoted, then the watch window moved the champion back) or
    ``not_released`` (the release could not run: no model server, the wrong one, a bundle it
    cannot load; the candidate is not at fault and stays a candidate). ``mode`` is the release
    mode that ran (``canary``, ``shadow`` or ``gate``)."""

    model: str
    version: int
    previous_champion: int | None
    status: ReleaseStatus = "aborted"
    reason: str = ""
    mode: str = "canary"
    steps: list[StepRecord] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None

    @property
    def promoted(self) -> bool:
        return self.status == "promoted"
