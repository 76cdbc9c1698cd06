"""A pipeline spec's ``budget:`` block: what one retrain and one prediction may cost.

```yaml
budget:
  max_training_minutes: 30        # the fit stops after the epoch that crosses it
  max_gpu_seconds: 1200           # the same, counting GPU time (zero on a CPU)
  max_predict_p95_ms: 10          # the gate fails a slower candidate
  max_cpu_ms_per_1k_predictions: 400
```

Every field is optional; an empty block limits nothing. Training stops cleanly at its budget
(``models.budget``): the best weights so far are bundled and the version's lineage says where
it stopped. The serving limits are checks of the gate (``tasks.gate.budget_checks``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from models.config import TrainingLimits
from tasks.gate.budget_checks import ServingBudget

__all__ = ["Budget"]


class Budget(BaseModel):
    """Limits on a retrain's training time and a candidate's serving cost (all optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_training_minutes: float | None = Field(
        default=None, gt=0.0, description="Stop training after the epoch that crosses this."
    )
    max_gpu_seconds: float | None = Field(
        default=None, gt=0.0, description="Stop training after the epoch that crosses this."
    )
    max_predict_p95_ms: float | None = Field(
        default=None, gt=0.0, description="Gate: p95 of single-instance predictions."
    )
    max_cpu_ms_per_1k_predictions: float | None = Field(
        default=None, gt=0.0, description="Gate: process CPU ms per 1000 single predictions."
    )

    @property
    def empty(self) -> bool:
        """Whether the block limits nothing (then it is left out of the spec's digest)."""
        return self == Budget()

    def training_limits(self) -> TrainingLimits | None:
        """The fit's limits, or None when training has none."""
        minutes, gpu = self.max_training_minutes, self.max_gpu_seconds
        if minutes is None and gpu is None:
            return None
        return TrainingLimits(None if minutes is None else minutes * 60.0, gpu)

    def serving(self) -> ServingBudget | None:
        """The gate's serving limits, or None when there are none."""
        p95, cpu = self.max_predict_p95_ms, self.max_cpu_ms_per_1k_predictions
        if p95 is None and cpu is None:
            return None
        return ServingBudget(max_p95_ms=p95, max_cpu_ms_per_1k=cpu)
