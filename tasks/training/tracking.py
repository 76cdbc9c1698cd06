"""MLflow experiment tracking that never takes a training run down with it.

Every call is guarded: if the tracking server or database cannot be reached, a warning is
logged, tracking switches itself off for the rest of the run, and training goes on. With
``strict=True`` the first failure raises ``TrackingError`` instead. No model flavour is logged
(that would make MLflow infer pip requirements, about 6 s per log); the bundle lives in the
registry and its manifest is logged as a JSON artifact, with the digest and version as tags.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from registry.errors import TrackingError

__all__ = ["MlflowTracker", "Tracker"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class Tracker(Protocol):
    """What training needs from an experiment tracker."""

    @property
    def run_id(self) -> str | None: ...

    def start(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def log_text(self, text: str, artifact_file: str) -> None: ...

    def finish(self, status: str = "FINISHED") -> None: ...


class MlflowTracker:
    """One MLflow run at a time in ``experiment``, through ``MlflowClient`` (no global state)."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        experiment: str = "retrain",
        artifact_location: str | None = None,
        strict: bool = False,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.artifact_location = artifact_location
        self.strict = strict
        self.disabled = False
        self._run_id: str | None = None
        self._client: Any = None

    @property
    def run_id(self) -> str | None:
        return self._run_id

    def start(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        def go() -> None:
            from mlflow.entities import Param, RunTag
            from mlflow.tracking import MlflowClient

            # An unreachable server should cost seconds, not MLflow's default minutes of retries.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
            client = MlflowClient(tracking_uri=self.tracking_uri)
            exp = client.get_experiment_by_name(self.experiment)
            exp_id = (
                exp.experiment_id
                if exp
                else client.create_experiment(
                    self.experiment, artifact_location=self.artifact_location
                )
            )
            run = client.create_run(exp_id, run_name=run_name, tags=dict(tags))
            self._client, self._run_id = client, run.info.run_id
            client.log_batch(
                run.info.run_id,
                params=[Param(k, str(v)[:6000]) for k, v in sorted(params.items())],
                tags=[RunTag(k, v) for k, v in tags.items()],
            )

        self._guard("start a run", go)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        def go() -> None:
            from mlflow.entities import Metric

            now = _now_ms()
            batch = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())]
            self._client.log_batch(self._run_id, metrics=batch)

        self._guard("log metrics", go, needs_run=True)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        def go() -> None:
            from mlflow.entities import RunTag

            self._client.log_batch(self._run_id, tags=[RunTag(k, v) for k, v in tags.items()])

        self._guard("set tags", go, needs_run=True)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._guard(
            "log an artifact",
            lambda: self._client.log_text(self._run_id, text, artifact_file),
            needs_run=True,
        )

    def finish(self, status: str = "FINISHED") -> None:
        self._guard(
            "end the run", lambda: self._client.set_terminated(self._run_id, status), needs_run=True
        )

    def _guard(self, what: str, action: Callable[[], T], *, needs_run: bool = False) -> T | None:
        if self.disabled or (needs_run and self._run_id is None):
            return None
        try:
            return action()
        except Exception as exc:  # any MLflow/network/database failure is handled alike
            message = f"MLflow at {self.tracking_uri} failed to {what}: {exc}".splitlines()[0]
            if self.strict:
                raise TrackingError(message + " (strict tracking is on)") from exc
            log.warning("%s; training continues without tracking", message)
            self.disabled = True
            return None


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
