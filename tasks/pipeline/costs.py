"""A retrain's cost per stage, measured around its steps and recorded where people look.

``CostMeter.wrap(steps)`` measures the validate, drift, train, gate and release (``canary``)
steps with ``tasks.pipeline.resources.measure``. Once the candidate version exists (after
training), the stages measured so far are merged into its lineage under ``cost`` (the registry's
``update_lineage``) and logged as ``cost.<stage>.<measure>`` metrics on the training's MLflow
run; the gate and the canary add theirs when they end. When the run ends (the gate rejected the
candidate, or the release finished) the table is published as the Prefect table artifact
``cost-<model>``. Each stage's cost is also one line of the run's log, and a fit stopped by its
budget says so there (``training stopped at its budget: ...``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from registry.errors import RetrainError
from tasks.pipeline.resources import RunCosts, StageCost
from tasks.reporting.artifacts import artifact_key, publish_table

if TYPE_CHECKING:
    from registry.store import Registry
    from tasks.pipeline.recipe import Steps
    from tasks.training.tracking import Tracker

__all__ = ["CostMeter", "describe_cost"]

_STAGE_OF = {
    "validate": "validate",
    "drift": "drift",
    "train": "train",
    "gate": "gate",
    "release": "canary",
}
Logger = logging.Logger | logging.LoggerAdapter[Any]


class CostMeter:
    """Measures a retrain's stages and records their cost on its candidate version."""

    def __init__(self, tracker: Tracker | None = None) -> None:
        self.costs = RunCosts()
        self.tracker = tracker
        self._registry: Registry | None = None
        self._model = ""
        self._version = 0
        self._mlflow_run_id: str | None = None

    def wrap(self, steps: Steps) -> Steps:
        """``steps`` with each measured step (see the module doc) metered."""
        log = steps.logger
        return replace(
            steps, **{name: self._metered(name, getattr(steps, name), log) for name in _STAGE_OF}
        )

    def _metered(
        self, name: str, step: Callable[..., Any], log: Callable[[], Logger]
    ) -> Callable[..., Any]:
        stage = _STAGE_OF[name]

        def run(*args: Any, **kwargs: Any) -> Any:
            with self.costs.measure(stage) as cost:
                result = step(*args, **kwargs)
            logger = log()
            logger.info(describe_cost(cost))
            if name == "train":
                self._candidate(args[0], result, logger)
            self._record(stage, logger)
            if name == "release" or (name == "gate" and not getattr(result, "passed", True)):
                self.publish()
            return result

        return run

    def _candidate(self, registry: Registry, result: Any, logger: Logger) -> None:
        """Remember where the costs go: the version the train step registered."""
        version = int(getattr(result, "version", 0) or 0)
        if version < 1:  # a DDP rank other than zero registers nothing
            return
        self._registry, self._model, self._version = registry, str(result.model), version
        self._mlflow_run_id = getattr(result, "mlflow_run_id", None)
        lineage = getattr(result, "lineage", None) or {}
        stopped = (lineage.get("training_budget") or {}).get("stopped")
        if stopped:
            logger.info(stopped)

    def _record(self, stage: str, logger: Logger) -> None:
        """The costs so far into the version's lineage; the new ones onto its MLflow run."""
        if self._registry is None:
            return  # no version yet: training records the stages before it
        try:
            self._registry.catalog.update_lineage(
                self._model, self._version, {"cost": self.costs.to_dict()}
            )
        except RetrainError as exc:
            logger.warning("cost of %s not recorded on v%s: %s", stage, self._version, exc)
        tracker = self.tracker
        if tracker is None or tracker.run_id is None or tracker.run_id != self._mlflow_run_id:
            return
        stages = self.costs.stages if stage == "train" else {stage: self.costs.stages[stage]}
        tracker.log_metrics(RunCosts(stages).metrics(), step=0)

    def publish(self) -> None:
        """The run's cost table as the Prefect table artifact ``cost-<model>`` (in a run)."""
        if not self._model:
            return
        where = f"{self._model} v{self._version}"
        publish_table(
            artifact_key("cost", self._model),
            self.costs.rows(),
            description=f"What the retrain of {where} cost, per stage",
        )


def describe_cost(cost: StageCost) -> str:
    """One log line: ``cost of train: 12.30 s wall, 20.10 s CPU, peak RSS 812 MB, 0.00 GPU s``."""
    gpu = "" if cost.gpu_peak_mb is None else f", GPU peak {cost.gpu_peak_mb:.0f} MB"
    return (
        f"cost of {cost.stage}: {cost.wall_s:.2f} s wall, {cost.cpu_s:.2f} s CPU, "
        f"peak RSS {cost.peak_rss_mb:.0f} MB, {cost.gpu_s:.2f} GPU s{gpu}"
    )
