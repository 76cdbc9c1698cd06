"""Errors raised by the tasks package, hung off ``registry.errors.RetrainError``.

    RetrainError
    └── TaskError                     a pipeline step refused its input
        ├── DataSourceError           a data source is missing, empty, unreadable or not a table
        ├── DataValidationError       a batch broke its contract; ``.result`` holds every check
        ├── DriftError                drift could not be measured (no shared columns, bad policy)
        └── MetricsUnavailableError   canary metrics unreadable (model server or Prometheus down)

Each message is one line naming what was wrong and what to do about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry.errors import RetrainError

if TYPE_CHECKING:
    from tasks.validation import ValidationResult

__all__ = [
    "DataSourceError",
    "DataValidationError",
    "DriftError",
    "MetricsUnavailableError",
    "TaskError",
]


class TaskError(RetrainError):
    """A pipeline step refused its input."""


class DataSourceError(TaskError):
    """A data source is missing, empty, unreadable or not tabular."""


class DataValidationError(TaskError):
    """A batch failed its data contract; ``result`` lists every expectation and its counts."""

    def __init__(self, message: str, result: ValidationResult) -> None:
        super().__init__(message)
        self.result = result


class DriftError(TaskError):
    """Drift could not be measured between the two frames."""


class MetricsUnavailableError(TaskError):
    """The canary's metrics source (model server stats or Prometheus) could not be read."""
