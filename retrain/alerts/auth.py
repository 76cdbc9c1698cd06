"""How the alert receiver knows a request comes from a sender it trusts.

Every request carries either

- ``Authorization: Bearer <token>``, or
- an HMAC-SHA256 signature: ``X-Retrain-Timestamp: <unix seconds>`` and
  ``X-Retrain-Signature: sha256=<hex of HMAC(secret, "<timestamp>.<body>")>``; the timestamp
  is whole unix seconds (digits only: ``nan``, ``1e9`` or ``-5`` are refused with 400, so no
  timestamp escapes the window), and one more than five minutes away from the receiver's clock
  is refused (replays).

Both are compared in constant time. ``sign_body`` is the sender's half (the CLI and benchmarks
use it); ``RequestAuth`` is the receiver's.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping

from registry.errors import ConfigError

__all__ = [
    "MAX_SIGNATURE_AGE_S",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Refused",
    "RequestAuth",
    "sign_body",
]

MAX_SIGNATURE_AGE_S = 300.0
TIMESTAMP_HEADER = "x-retrain-timestamp"
SIGNATURE_HEADER = "x-retrain-signature"
# Whole seconds, as sign_body writes them; 12 digits reach the year 33658.
_STAMP = re.compile(r"[0-9]{1,12}")


class Refused(Exception):
    """A request the receiver turns down, with the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def sign_body(secret: str, body: bytes, timestamp: float | None = None) -> dict[str, str]:
    """The headers that sign ``body`` for the receiver (what a sender adds)."""
    stamp = str(int(time.time() if timestamp is None else timestamp))
    mac = _mac(secret.encode(), stamp, body)
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: f"sha256={mac}"}


def _mac(secret: bytes, stamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"``: what a sender signs, what is checked."""
    return hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class RequestAuth:
    """The receiver's credentials: a bearer token, an HMAC secret, or both.

    Signature ages are measured on the wall clock (``time.time``), never on a simulation's
    clock: a signature is as old as the real seconds since its sender made it.
    """

    def __init__(
        self,
        token: str | None,
        hmac_secret: str | None,
        max_signature_age_s: float = MAX_SIGNATURE_AGE_S,
    ) -> None:
        if not token and not hmac_secret:
            raise ConfigError(
                "the alert receiver needs RETRAIN_ALERTS_TOKEN or RETRAIN_ALERTS_HMAC_SECRET"
            )
        self._token = token.encode() if token else None
        self._secret = hmac_secret.encode() if hmac_secret else None
        self._max_age_s = max_signature_age_s

    def check_bearer(self, header: str) -> None:
        """Accept ``Authorization: Bearer <token>`` with the right token, or raise ``Refused``."""
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or self._token is None:
            raise Refused(401, "unsupported Authorization; use a bearer token or a signature")
        if not hmac.compare_digest(credential.strip().encode(), self._token):
            raise Refused(401, "invalid bearer token")

    def check_signature(self, headers: Mapping[str, str], body: bytes) -> None:
        """Accept a fresh, valid signature of ``body``, or raise ``Refused``."""
        stamp = headers.get(TIMESTAMP_HEADER)
        signature = headers.get(SIGNATURE_HEADER)
        if self._secret is None or not stamp or not signature:
            raise Refused(401, "missing credentials: a bearer token or a signed timestamp")
        if not _STAMP.fullmatch(stamp):
            # float() would take "nan", which is never "too old": a signature valid forever.
            raise Refused(400, f"{TIMESTAMP_HEADER} must be whole unix seconds (digits only)")
        if abs(time.time() - int(stamp)) > self._max_age_s:
            raise Refused(401, "timestamp is more than 5 minutes off; sign again and resend")
        given = signature.removeprefix("sha256=").strip().encode()
        if not hmac.compare_digest(given, _mac(self._secret, stamp, body).encode()):
            raise Refused(401, "invalid signature")
