"""Why a retrain stopped, said once: the stage it reached, the reason, what to do.

``StageTracker`` wraps the steps of a retrain (``tasks.pipeline.recipe.Steps``) so each marks
its stage as it starts, and the next stage as it returns (code between two steps belongs to
the step that follows it), and keeps what the run stored: its snapshots and its candidate.
When a step raises one of the platform's own errors (``RetrainError``: a contract that
fails, a source that cannot be read, a target with missing values ...), ``record_failure``
appends one ``run.failed`` event whose reason is one line, and the flow ends Failed with that
line as its state message. The snapshots the run stored are listed in the event, so
``retrain registry gc`` can collect them once nothing else uses them (``registry.leftovers``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from registry.errors import (
    ConfigError,
    CorruptBlobError,
    DatabaseUnavailableError,
    DataSourceError,
    DataValidationError,
    DriftError,
    RetrainError,
    StoreUnavailableError,
    TrainingError,
)
from registry.leftovers import FAILED_RUN_EVENT
from registry.redaction import redact_url

if TYPE_CHECKING:
    from registry.store import Registry
    from tasks.pipeline.recipe import Steps

__all__ = [
    "FAILED_RUN_EVENT",
    "RunFailure",
    "StageTracker",
    "one_line",
    "quiet_platform_tracebacks",
    "record_failure",
]

# Each step of ``Steps`` and the stage it is; their order is the order a retrain runs them.
_STAGE_OF = {
    "load": "load",
    "prepare": "snapshot",
    "validate": "validate",
    "find_reusable": "reuse",
    "drift": "drift",
    "train": "train",
    "gate": "gate",
    "release": "release",
    "record": "record",
}
_ORDER = list(_STAGE_OF.values())


def one_line(text: str) -> str:
    """``text`` with its lines joined: a state message or a table cell holds one line."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


@dataclass
class StageTracker:
    """Where a retrain is (``stage``) and what it stored so far (snapshots, candidate)."""

    stage: str = "load"
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    candidate_version: int | None = None

    def wrap(self, steps: Steps) -> Steps:
        """``steps`` with each step marking its stage and keeping what it stored."""
        return replace(
            steps, **{name: self._tracked(name, getattr(steps, name)) for name in _STAGE_OF}
        )

    def _tracked(self, name: str, step: Callable[..., Any]) -> Callable[..., Any]:
        stage = _STAGE_OF[name]
        after = _ORDER[min(_ORDER.index(stage) + 1, len(_ORDER) - 1)]

        def run(*args: Any, **kwargs: Any) -> Any:
            self.stage = stage
            result = step(*args, **kwargs)
            self._keep(name, result)
            self.stage = after
            return result

        return run

    def _keep(self, name: str, result: Any) -> None:
        if name == "prepare":  # a PreparedData: the batch, its training rows, its holdout
            parts = (getattr(result, part, None) for part in ("batch", "training", "holdout"))
            self.snapshots = [
                {"name": snap.name, "digest": snap.digest, "rows": snap.rows}
                for snap in parts
                if snap is not None
            ]
        elif name == "train":
            self.candidate_version = getattr(result, "version", None) or None

    @property
    def dataset_digest(self) -> str | None:
        """The digest of the batch this run snapshotted, once it has."""
        return str(self.snapshots[0]["digest"]) if self.snapshots else None


@dataclass(frozen=True)
class RunFailure:
    """One failed retrain: where it stopped, why, what to do, and what it had stored."""

    model: str
    stage: str
    reason: str
    todo: str
    error: str
    run_id: str | None = None
    trigger: str | None = None
    source: str | None = None
    dataset_digest: str | None = None
    snapshots: tuple[dict[str, Any], ...] = ()
    candidate_version: int | None = None

    @property
    def line(self) -> str:
        """The one line a user reads: in the Prefect state, the log and ``models history``."""
        return f"retrain of {self.model} failed at {self.stage}: {self.reason}; {self.todo}"

    def payload(self) -> dict[str, Any]:
        """The ``run.failed`` event's payload (``snapshots``: what ``gc`` may collect)."""
        return {
            "stage": self.stage,
            "error": self.error,
            "reason": self.reason,
            "todo": self.todo,
            "run_id": self.run_id,
            "trigger": self.trigger,
            "source": self.source,
            "dataset_digest": self.dataset_digest,
            "snapshots": list(self.snapshots),
            "candidate_version": self.candidate_version,
        }


def what_to_do(error: RetrainError, model: str) -> str:
    """What the user can do about ``error``, by its kind."""
    if isinstance(error, DataValidationError):
        return (
            "fix the data or the contract; every check is in the validation report "
            f"(`retrain registry ls --kind validation --model {model}`)"
        )
    if isinstance(error, DataSourceError):
        return "check dataset.source in the spec and that this machine can read it"
    if isinstance(error, TrainingError):
        return "check the spec's target, task and features against the data (types, missing values)"
    if isinstance(error, DriftError):
        return "check the spec's drift settings against the data's columns"
    if isinstance(error, (StoreUnavailableError, DatabaseUnavailableError, CorruptBlobError)):
        return "check the registry (`retrain registry verify`) and its settings, then run again"
    if isinstance(error, ConfigError):
        return "fix the spec or setting it names, then register the spec again"
    return "fix what it names, then run the retrain again"


def record_failure(
    registry: Registry,
    model: str,
    tracker: StageTracker,
    error: RetrainError,
    *,
    run_id: str | None,
    trigger: str,
    source: str,
    actor: str,
) -> tuple[RunFailure, int | None]:
    """Append the ``run.failed`` event of a retrain ``error`` stopped; (the failure, the
    event's id, None when the registry could not take it either)."""
    failure = RunFailure(
        model=model,
        stage=tracker.stage,
        reason=one_line(str(error)) or type(error).__name__,
        todo=what_to_do(error, model),
        error=type(error).__name__,
        run_id=run_id,
        trigger=trigger,
        source=redact_url(source),
        dataset_digest=tracker.dataset_digest,
        snapshots=tuple(tracker.snapshots),
        candidate_version=tracker.candidate_version,
    )
    version = tracker.candidate_version
    try:
        event = registry.catalog.append_event(
            FAILED_RUN_EVENT,
            model=model,
            versions=[version] if version is not None else [],
            reason=failure.line,
            actor=actor,
            payload=failure.payload(),
        )
    except RetrainError:  # the registry itself is down: the line still reaches the user
        return failure, None
    return failure, event.id


class _NoTracebackForPlatformErrors(logging.Filter):
    """Drops the traceback from a log record of one of the platform's own errors: their
    message is the one line a user needs (unexpected errors keep theirs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, RetrainError):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_platform_tracebacks(logger_name: str = "prefect.task_runs") -> None:
    """Log a task run that stops on a platform error as one line, not a traceback
    (idempotent). Prefect logs every failed task run with its traceback; the flow then says
    why once, in its state message and its ``run.failed`` event."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _NoTracebackForPlatformErrors) for f in logger.filters):
        logger.addFilter(_NoTracebackForPlatformErrors())
