"""A pipeline's plan: what every step of a retrain needs, typed, built from a pipeline spec.

The flow, ``retrain train``/``retrain evaluate`` and the benchmarks all take this one object,
so the same spec gives the same snapshots, the same split and the same bundle through each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tasks.data.drift import DriftPolicy
from tasks.data.privacy import PrivacyPolicy
from tasks.gate.evaluate import GateRules
from tasks.pipeline.budget import Budget
from tasks.release.policy import CanaryPolicy, ReleasePolicy
from tasks.training.plan import TrainingPlan

__all__ = ["PipelinePlan"]


@dataclass(frozen=True)
class PipelinePlan:
    """Everything a retrain of one model decides by, apart from the data itself."""

    training: TrainingPlan
    holdout_fraction: float = 0.2
    contract: str | None = None
    """The data contract as the spec names it (a suite file or name; None: no validation)."""
    contract_digest: str | None = None
    """The suite's digest in the registry: what a run validates with."""
    contract_suite: Mapping[str, Any] | None = None
    """The suite itself when the spec was read from a file (a run before registering)."""
    gate: GateRules = field(default_factory=GateRules)
    drift: DriftPolicy = field(default_factory=DriftPolicy)
    canary: CanaryPolicy = field(default_factory=CanaryPolicy)
    spec_digest: str | None = None
    release: ReleasePolicy = field(default_factory=ReleasePolicy)
    budget: Budget = field(default_factory=Budget)
    """Training time and serving cost limits (``tasks.pipeline.budget``)."""
    privacy: PrivacyPolicy = field(default_factory=PrivacyPolicy)
    """PII dropped or hashed on load, sensitive columns never shown (``tasks.data.privacy``)."""

    @property
    def model(self) -> str:
        """The model's name (also the pipeline's)."""
        return self.training.model

    def with_epochs(self, epochs: int | None) -> PipelinePlan:
        """The same plan with ``max_epochs`` overridden (``None`` keeps it)."""
        if epochs is None:
            return self
        return replace(self, training=self.training.with_fitting(max_epochs=epochs))
