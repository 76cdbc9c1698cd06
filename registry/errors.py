"""The project's exception tree, drawn once. Every error a user can cause derives from
``RetrainError``; its message is one line naming what was wrong and what to do about it.

    RetrainError                      one clear line for the user; CLI exits non-zero
    ├── ConfigError                   bad settings, spec or command-line input
    │   └── AlertPayloadError         an alert document the receiver cannot use (a 4xx)
    ├── RegistryError
    │   ├── InvalidDigestError        not of the form ``sha256:<64 hex>``
    │   ├── BlobNotFoundError         no blob stored under that digest
    │   ├── CorruptBlobError          bytes read do not hash to their digest
    │   ├── StoreUnavailableError     object store unreachable or credentials refused
    │   ├── DatabaseUnavailableError  SQL catalog unreachable
    │   ├── NotFoundError             no such model, version, dataset or alias
    │   └── AliasConflictError        compare-and-swap on an alias lost a race
    ├── ModelError                    anything about a model, its bundle or its inputs
    │   ├── BundleError               a bundle is missing, tampered with or unreadable
    │   ├── InvalidInstanceError      an instance to predict on is malformed; names the field
    │   └── TrainingError             training could not run on the data given
    ├── TaskError                     a pipeline step refused its input
    │   ├── DataSourceError           a data source is missing, empty, unreadable or not a table
    │   ├── DataValidationError       a batch broke its contract; ``.result`` holds every check
    │   ├── RunFailedError            a retrain stopped on its data or spec; ``.stage`` says where
    │   ├── DriftError                drift could not be measured (no shared columns, bad policy)
    │   ├── MetricsUnavailableError   canary metrics unreadable (model server or Prometheus down)
    │   └── TrackingError             strict tracking was asked for and MLflow is unreachable
    ├── ServingError                  the server or a release could not do what was asked
    │   ├── InvalidRequestError       a request is refused (its 4xx ``status``); names the field
    │   ├── BundleLoadError           a version's bundle could not be loaded; the old one stays
    │   └── ReleaseLockedError        another release of the model holds the release lock
    ├── LaunchError                   a retrain could not be started (Prefect unreachable)
    └── StackError                    a part of the local stack failed to start
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlertPayloadError",
    "AliasConflictError",
    "BlobNotFoundError",
    "BundleError",
    "BundleLoadError",
    "ConfigError",
    "CorruptBlobError",
    "DataSourceError",
    "DataValidationError",
    "DatabaseUnavailableError",
    "DriftError",
    "InvalidDigestError",
    "InvalidInstanceError",
    "InvalidRequestError",
    "LaunchError",
    "MetricsUnavailableError",
    "ModelError",
    "NotFoundError",
    "RegistryError",
    "ReleaseLockedError",
    "RetrainError",
    "RunFailedError",
    "ServingError",
    "StackError",
    "StoreUnavailableError",
    "TaskError",
    "TrackingError",
    "TrainingError",
]


class RetrainError(Exception):
    """Base of every error this project raises on purpose; its message is one line for a user."""


class ConfigError(RetrainError):
    """Settings, a spec or command-line input is wrong; the message names the field."""


class AlertPayloadError(ConfigError):
    """An alert document the receiver cannot use; the sender gets ``status`` (a 4xx) and why."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class RegistryError(RetrainError):
    """Something in the content-addressed store or the SQL catalog went wrong."""


class InvalidDigestError(RegistryError):
    """A digest string is not ``sha256:`` followed by 64 lowercase hex digits."""


class BlobNotFoundError(RegistryError):
    """No blob is stored under the digest asked for."""


class CorruptBlobError(RegistryError):
    """Bytes read for a blob did not hash to its digest; they are never returned.

    ``actual`` is what the read hashed to (None when unknown). One bad read does not prove the
    stored bytes are damaged: the transport may be; ``Registry.verify`` re-reads to tell."""

    def __init__(self, message: str, *, actual: str | None = None) -> None:
        super().__init__(message)
        self.actual = actual


class StoreUnavailableError(RegistryError):
    """The object store cannot be reached or refused the credentials."""


class DatabaseUnavailableError(RegistryError):
    """The SQL catalog cannot be reached."""


class NotFoundError(RegistryError):
    """No such model, version, dataset, alias or pipeline."""


class AliasConflictError(RegistryError):
    """An alias did not point where the caller expected: another change won the race."""


class ModelError(RetrainError):
    """Something about a model, its bundle or its inputs is wrong."""


class BundleError(ModelError):
    """A model bundle failed verification (digest, manifest or weights) and was not loaded."""


class InvalidInstanceError(ModelError):
    """An instance sent for prediction lacks a feature or carries a value of the wrong type."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class TrainingError(ModelError):
    """Training cannot run on the data or settings given."""


class TaskError(RetrainError):
    """A pipeline step refused its input."""


class DataSourceError(TaskError):
    """A data source is missing, empty, unreadable or not tabular."""


class DataValidationError(TaskError):
    """A batch failed its data contract; ``result`` (a ``ValidationResult``) lists every check."""

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message)
        self.result = result


class RunFailedError(TaskError):
    """A retrain stopped on its data or spec. The message is the one line recorded as the run's
    ``run.failed`` event (the stage, the reason, what to do); ``stage`` names the step that
    failed, ``event_id`` the event (None if it could not be recorded); the error that stopped
    the step is its ``__cause__``."""

    def __init__(self, message: str, *, stage: str = "", event_id: int | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.event_id = event_id


class DriftError(TaskError):
    """Drift could not be measured between the two frames."""


class MetricsUnavailableError(TaskError):
    """The canary's metrics source (model server stats or Prometheus) could not be read."""


class TrackingError(TaskError):
    """The experiment tracker could not be reached while strict tracking was asked for."""


class ServingError(RetrainError):
    """The model server or a release could not do what was asked."""


class InvalidRequestError(ServingError):
    """A request is refused: malformed, over a limit or unauthenticated. ``status`` is the 4xx
    to answer, ``field`` names the offending part."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


class BundleLoadError(ServingError):
    """A model version's bundle failed to load or verify; it is never swapped in."""


class ReleaseLockedError(ServingError):
    """Another release of the same model is in progress (it holds the release lock)."""


class LaunchError(RetrainError):
    """A retrain could not be started (e.g. the Prefect API is unreachable); retried later."""


class StackError(RetrainError):
    """A part of the local stack failed to start."""
