"""When a model version stopped being served, so its series can leave ``/metrics`` in time.

A version is *in use* while a route serves it (champion, canary or shadow) or a registry alias
points at it (a canary still loading). Once out of use it is *retired*: its series stay for a
grace period (``ServeLimits.retired_series_grace_s``), long enough for a canary analysis or a
Prometheus ``increase()`` over the last minutes to read its final numbers, then the server
drops them. Without this every version ever served stays in ``/metrics`` for the life of the
process, one more set of series per release.

Two ways in, one record: the alias follower reports each route it swaps in (on its polling
thread), which dates a retirement exactly by the follower's clock; the server's sweep (on the
event loop, at scrape and stats time) catches anything out of use that no route change named
(a version whose bundle never loaded, one no longer aimed at). A version back in use before its
grace ends keeps its counters; one that comes back later starts a new series from zero.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from serving.routing import Route

if TYPE_CHECKING:
    from serving.follower import AliasFollower
    from serving.stats import StatsBook

__all__ = ["Retirements", "in_use", "served_versions"]

log = logging.getLogger(__name__)

Key = tuple[str, int]  # (model, version)


def served_versions(route: Route | None) -> set[int]:
    """The versions ``route`` answers or scores with."""
    if route is None:
        return set()
    return {m.version for m in (route.champion, route.canary) if m is not None}


def in_use(follower: AliasFollower) -> set[Key]:
    """(model, version) pairs a route of ``follower`` serves or a registry alias points at."""
    used = {
        (model, version)
        for model, route in list(follower.routes.items())
        for version in served_versions(route)
    }
    for model, state in list(follower.desired.items()):
        used.update((model, v) for v in (state.champion, state.canary) if v is not None)
    return used


class Retirements:
    """Since when each out-of-use version has been retired, on ``clock`` (seconds)."""

    def __init__(self, grace_s: float, clock: Callable[[], float]) -> None:
        self.grace_s = grace_s
        self._clock = clock
        self._since: dict[Key, float] = {}
        self._lock = threading.Lock()  # the follower's thread and the event loop both write

    def route_changed(self, old: Route | None, new: Route) -> None:
        """The follower swapped ``new`` in for ``old``: versions that left it retire now, those
        in it are in use again."""
        left = served_versions(old) - served_versions(new)
        now = self._clock()
        with self._lock:
            for version in left:
                self._since.setdefault((new.model, version), now)
            for version in served_versions(new):
                self._since.pop((new.model, version), None)

    def sweep(self, known: Iterable[Key], in_use: set[Key]) -> list[Key]:
        """Of the versions with series (``known``), those retired for at least the grace period:
        forgotten here, for the caller to drop. A known version out of use that no route change
        reported retires now; one in use is forgotten."""
        now = self._clock()
        due: list[Key] = []
        with self._lock:
            for key in in_use:
                self._since.pop(key, None)
            for key in (set(known) | set(self._since)) - in_use:
                since = self._since.setdefault(key, now)
                if now - since >= self.grace_s:
                    due.append(key)
                    del self._since[key]
        return sorted(due)

    def prune(self, book: StatsBook, follower: AliasFollower) -> list[Key]:
        """Drop from ``book`` (and the follower's load-failure counts) every version retired for
        at least the grace period; the (model, version) pairs dropped. Call it on the event
        loop, the book's only writer."""
        known = {(s.model, s.version) for s in book} | set(follower.load_failures)
        due = self.sweep(known, in_use(follower))
        for model, version in due:
            book.drop_version(model, version)
            follower.load_failures.pop((model, version), None)
        if due:
            log.info("dropped the series of retired versions %s", due)
        return due
