"""The project's exception tree. Every error a user can cause derives from ``RetrainError``.

    RetrainError                      one clear line for the user; CLI exits non-zero
    ├── ConfigError                   bad settings, spec or command-line input
    └── RegistryError
        ├── InvalidDigestError        not of the form ``sha256:<64 hex>``
        ├── BlobNotFoundError         no blob stored under that digest
        ├── CorruptBlobError          stored bytes do not hash to their digest
        ├── StoreUnavailableError     object store unreachable or credentials refused
        ├── DatabaseUnavailableError  SQL catalog unreachable
        ├── NotFoundError             no such model, version, dataset or alias
        └── AliasConflictError        compare-and-swap on an alias lost a race

Other packages hang their own branches off ``RetrainError`` (``models.errors``,
``tasks.errors``, ``serving.errors``).
"""

from __future__ import annotations

__all__ = [
    "AliasConflictError",
    "BlobNotFoundError",
    "ConfigError",
    "CorruptBlobError",
    "DatabaseUnavailableError",
    "InvalidDigestError",
    "NotFoundError",
    "RegistryError",
    "RetrainError",
    "StoreUnavailableError",
]


class RetrainError(Exception):
    """Base of every error this project raises on purpose; its message is one line for a user."""


class ConfigError(RetrainError):
    """Settings, a spec or command-line input is wrong; the message names the field."""


class RegistryError(RetrainError):
    """Something in the content-addressed store or the SQL catalog went wrong."""


class InvalidDigestError(RegistryError):
    """A digest string is not ``sha256:`` followed by 64 lowercase hex digits."""


class BlobNotFoundError(RegistryError):
    """No blob is stored under the digest asked for."""


class CorruptBlobError(RegistryError):
    """The stored bytes no longer hash to their digest; they are never returned."""


class StoreUnavailableError(RegistryError):
    """The object store cannot be reached or refused the credentials."""


class DatabaseUnavailableError(RegistryError):
    """The SQL catalog cannot be reached."""


class NotFoundError(RegistryError):
    """No such model, version, dataset, alias or pipeline."""


class AliasConflictError(RegistryError):
    """An alias did not point where the caller expected: another change won the race."""
