"""What the model server accepts from a caller: body size, batch size, request ids, the feedback
log's memory, prediction threads, how long a retired version's metrics stay, and the optional
bearer token.

Built from ``retrain.config.settings.Settings`` by ``retrain serve`` (``RETRAIN_SERVE_*``); the
defaults are the settings' defaults, so tests and benchmarks get the production limits.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from registry.errors import ConfigError, InvalidRequestError

__all__ = ["ServeLimits"]


@dataclass(frozen=True)
class ServeLimits:
    """Limits and credentials of one model server."""

    max_body_bytes: int = 1 << 20
    max_instances: int = 1000  # per predict request, and feedback items per feedback request
    request_id_max_chars: int = 128
    feedback_capacity: int = 200_000  # answers awaiting labels
    feedback_max_predictions: int = 1_000_000  # predictions those answers hold, all together
    predict_threads: int = 4
    retired_series_grace_s: float = 600.0  # a version out of use keeps its series this long
    token: str | None = field(default=None, repr=False)
    auth_predict: bool = False

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_instances",
            "request_id_max_chars",
            "feedback_capacity",
            "feedback_max_predictions",
            "predict_threads",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"serve_{name} must be at least 1, got {getattr(self, name)}")
        if not self.retired_series_grace_s >= 0:  # also refuses NaN
            raise ConfigError(
                f"serve_retired_series_grace_s must be >= 0 s, got {self.retired_series_grace_s}"
            )
        if self.auth_predict and not self.token:
            raise ConfigError("serve_auth_predict needs a token; set RETRAIN_SERVE_TOKEN")

    def check_token(self, authorization: str | None, *, required: bool = True) -> None:
        """Refuse (401) a request without ``Authorization: Bearer <token>`` when a token is set
        and ``required``; compared in constant time so the token cannot be guessed by timing."""
        if self.token is None or not required:
            return
        scheme, _, credential = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise InvalidRequestError(
                "missing credentials: send Authorization: Bearer <token>",
                field="authorization",
                status=401,
            )
        if not hmac.compare_digest(credential.strip().encode(), self.token.encode()):
            raise InvalidRequestError("invalid bearer token", field="authorization", status=401)
