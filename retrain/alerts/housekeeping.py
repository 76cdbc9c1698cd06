"""The alert inbox's housekeeping: pruning old decided alerts, and saying once an hour that
alerts name a model nobody registered (senders such as Alertmanager discard the 202 body
that lists them, so the log is where an operator sees it)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from registry.errors import RetrainError

if TYPE_CHECKING:
    from registry.records import AlertRecord
    from registry.store import Registry

__all__ = ["InboxPruner", "UnknownModelLog"]

log = logging.getLogger(__name__)
_PRUNE_EVERY_S = 3600.0  # the inbox is pruned at most this often
_UNKNOWN_LOG_S = 3600.0  # an unknown model is logged once per model per this long
_MAX_REMEMBERED = 1024


class InboxPruner:
    """Deletes decided alerts received more than ``retention_days`` ago, at most hourly."""

    def __init__(
        self, registry: Registry, *, retention_days: float, clock: Callable[[], float]
    ) -> None:
        self._registry, self._clock = registry, clock
        self._retention_s = retention_days * 86400.0
        self._next = float("-inf")

    def due(self) -> bool:
        """Whether an hour has passed since the last prune."""
        return self._clock() >= self._next

    def prune(self) -> int:
        """How many alerts were deleted; a failure is logged and retried at the next sweep.
        Rows still ``received`` are never deleted: they have not been decided yet."""
        now = self._clock()
        cutoff = datetime.fromtimestamp(now - self._retention_s, UTC)
        try:
            pruned = self._registry.catalog.prune_alerts(cutoff)
        except RetrainError:
            log.exception("pruning the alert inbox failed")
            return 0
        self._next = now + _PRUNE_EVERY_S
        if pruned:
            log.info("pruned %d alerts received before %s", pruned, cutoff.isoformat())
        return pruned


class UnknownModelLog:
    """Warns about alerts for a model with no registered pipeline, once per model per hour."""

    def __init__(self, logger: logging.Logger, *, clock: Callable[[], float]) -> None:
        self._log, self._clock = logger, clock
        self._logged: dict[str, float] = {}  # model: when it was last logged

    def warn(self, alert: AlertRecord) -> None:
        now = self._clock()
        last = self._logged.get(alert.model)
        if last is not None and now - last < _UNKNOWN_LOG_S:
            return
        if len(self._logged) >= _MAX_REMEMBERED:  # many names: forget those logged long ago
            self._logged = {m: t for m, t in self._logged.items() if now - t < _UNKNOWN_LOG_S}
        self._logged[alert.model] = now
        self._log.warning(
            "alert %s from %s names model %r, which has no registered pipeline: ignored "
            "(register its spec with `retrain pipelines register`; logged once an hour)",
            alert.id,
            alert.source,
            alert.model,
        )
