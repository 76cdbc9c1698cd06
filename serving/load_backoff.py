"""When the model server tries a version's bundle again after it failed to load.

Two kinds of failure call for different pacing. The store or the catalog being unreachable
(or a blob not there yet) is transient: the version is retried every ``retry_s`` so it is
served soon after they come back. A bundle that fails verification is bad by content, and its
bytes never change under its digest: it is remembered per digest and retried only after an
exponential backoff (``retry_s``, doubling, capped at ``max_backoff_s``), or at once when an
alias is pointed at its version again, since that is someone asking for a fresh try.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from registry.errors import (
    BlobNotFoundError,
    DatabaseUnavailableError,
    NotFoundError,
    StoreUnavailableError,
)

__all__ = ["LoadBackoff", "is_transient"]

Key = tuple[str, int]  # (model, version)

_TRANSIENT = (
    StoreUnavailableError,
    DatabaseUnavailableError,
    BlobNotFoundError,
    NotFoundError,
    OSError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or anything it was raised from) says "unreachable", not "bad bytes"."""
    seen: BaseException | None = exc
    for _ in range(16):  # causes are chained a few deep; never loop on a cycle
        if seen is None:
            return False
        if isinstance(seen, _TRANSIENT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@dataclass(frozen=True)
class _Bad:
    attempts: int
    retry_at: float  # on the monotonic clock
    error: str


class LoadBackoff:
    """Which versions may be loaded now; bad bundles per digest, other failures per version."""

    def __init__(
        self, *, retry_s: float, max_backoff_s: float, monotonic: Callable[[], float]
    ) -> None:
        self.retry_s = retry_s
        self.max_backoff_s = max(retry_s, max_backoff_s)
        self.monotonic = monotonic
        self._bad: dict[str, _Bad] = {}
        self._transient_at: dict[Key, float] = {}

    def due(self, key: Key, digest: str | None) -> bool:
        """May ``key`` (bundle ``digest``, None while unknown) be loaded now?"""
        now = self.monotonic()
        failed_at = self._transient_at.get(key)
        if failed_at is not None and now - failed_at < self.retry_s:
            return False
        bad = self._bad.get(digest) if digest is not None else None
        return bad is None or now >= bad.retry_at

    def bad_error(self, digest: str) -> str | None:
        """Why ``digest`` was found bad, if it was."""
        bad = self._bad.get(digest)
        return bad.error if bad is not None else None

    def failed(self, key: Key, digest: str | None, exc: BaseException) -> None:
        """Record one failed attempt to load ``key``."""
        now = self.monotonic()
        if digest is None or is_transient(exc):
            self._transient_at[key] = now
            return
        self._transient_at.pop(key, None)
        previous = self._bad.get(digest)
        attempts = 1 if previous is None else previous.attempts + 1
        delay = min(self.retry_s * 2.0 ** min(attempts - 1, 40), self.max_backoff_s)
        self._bad[digest] = _Bad(attempts, now + delay, str(exc))

    def loaded(self, key: Key, digest: str) -> None:
        """``key`` loaded: forget its failures."""
        self._transient_at.pop(key, None)
        self._bad.pop(digest, None)

    def reaimed(self, key: Key, digest: str | None) -> None:
        """An alias now points at ``key`` that did not at the last poll: try it once, now.

        The attempt count is kept, so if it fails again the backoff goes on growing.
        """
        self._transient_at.pop(key, None)
        if digest is not None and (bad := self._bad.get(digest)) is not None:
            self._bad[digest] = _Bad(bad.attempts, self.monotonic(), bad.error)

    def retry_in_s(self, key: Key, digest: str | None) -> float | None:
        """Seconds until ``key`` is tried again; None if it is not waiting."""
        now = self.monotonic()
        waits: list[float] = []
        failed_at = self._transient_at.get(key)
        if failed_at is not None:
            waits.append(failed_at + self.retry_s - now)
        bad = self._bad.get(digest) if digest is not None else None
        if bad is not None:
            waits.append(bad.retry_at - now)
        return round(max(waits), 3) if waits and max(waits) > 0 else None
