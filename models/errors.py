"""Errors raised by the models package, a branch of the project's tree.

RetrainError (registry.errors)
└── ModelError                  anything about a model, its bundle or its inputs
    ├── BundleError             a bundle is missing, tampered with or unreadable
    ├── InvalidInstanceError    an instance to predict on is malformed; names the field
    └── TrainingError           training could not run on the data given
"""

from __future__ import annotations

from registry.errors import RetrainError

__all__ = ["BundleError", "InvalidInstanceError", "ModelError", "TrainingError"]


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
