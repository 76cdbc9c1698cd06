"""What a training run fits (the plan) and how one run of it is carried out (the run).

The plan is part of a model's identity: the same plan, data and seed give the same bundle.
The run (tracker, checkpoints, progress, the facts of who started it) differs from run to run
and never reaches the bundle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.config import ModelConfig, TrainingConfig, TrainingLimits

if TYPE_CHECKING:
    from tasks.training.tracking import Tracker

__all__ = ["TrainingPlan", "TrainingRun", "loans_plan"]


@dataclass(frozen=True)
class TrainingPlan:
    """The model to fit: its name, target, task, features, architecture and fitting settings."""

    model: str
    target: str
    task: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    architecture: ModelConfig = field(default_factory=ModelConfig)
    fitting: TrainingConfig = field(default_factory=TrainingConfig)

    def with_fitting(self, **changes: Any) -> TrainingPlan:
        """The same plan with some fitting settings changed (e.g. ``max_epochs``)."""
        fitting = self.fitting.model_copy(update=changes)
        return TrainingPlan(
            self.model,
            self.target,
            self.task,
            self.numeric,
            self.categorical,
            self.architecture,
            TrainingConfig.model_validate(fitting.model_dump()),
        )


@dataclass(frozen=True)
class TrainingRun:
    """How one fit is run and recorded; nothing here changes the trained bundle."""

    tracker: Tracker | None = None
    checkpoint_root: Path | None = None
    run_info: Mapping[str, Any] = field(default_factory=dict)
    progress_bar: bool = False
    callbacks: Sequence[Any] = ()
    actor: str = "system"
    streaming: bool = False
    """Stream the data's Parquet row groups instead of loading it (``streaming_fit``)."""
    memory_budget_mb: int | None = None
    """MiB a run may hold (``Settings.memory_budget_mb``); a bigger snapshot streams. None:
    ``streaming_fit.DEFAULT_MEMORY_BUDGET_MB``."""
    limits: TrainingLimits | None = None
    """The fit's budget of time and GPU-seconds (``models.budget``; None: none)."""


def loans_plan(
    model: str = "loan-default",
    *,
    architecture: ModelConfig | None = None,
    fitting: TrainingConfig | None = None,
) -> TrainingPlan:
    """A binary plan over the loan simulator's features and target (``tasks.data.simulator``):
    what examples, tests and benchmarks train on generated applications."""
    from tasks.data.simulator import FEATURES_CATEGORICAL, FEATURES_NUMERIC, TARGET

    return TrainingPlan(
        model=model,
        target=TARGET,
        task="binary",
        numeric=tuple(FEATURES_NUMERIC),
        categorical=tuple(FEATURES_CATEGORICAL),
        architecture=architecture or ModelConfig(),
        fitting=fitting or TrainingConfig(),
    )
