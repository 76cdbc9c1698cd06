"""Errors of the model server and of the release machinery it shares with the canary.

RetrainError (registry.errors)
└── ServingError                  the server or a release could not do what was asked
    ├── InvalidRequestError       a request body is malformed; the message names the field
    ├── BundleLoadError           a version's bundle could not be loaded; the old one stays
    └── ReleaseLockedError        another release of the model holds the release lock
"""

from __future__ import annotations

from registry.errors import RetrainError

__all__ = [
    "BundleLoadError",
    "InvalidRequestError",
    "ReleaseLockedError",
    "ServingError",
]


class ServingError(RetrainError):
    """The model server or a release could not do what was asked."""


class InvalidRequestError(ServingError):
    """A request body is malformed; ``field`` names the offending part."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BundleLoadError(ServingError):
    """A model version's bundle failed to load or verify; it is never swapped in."""


class ReleaseLockedError(ServingError):
    """Another release of the same model is in progress (it holds the release lock)."""
