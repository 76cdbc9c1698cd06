"""Release state of a model kept in the registry: canary weight, release lock, lease, repair.

The catalog has aliases (compare-and-swap) and an append-only event log, and nothing else is
needed: the canary *weight* is the latest ``canary.weight`` event whose version is the current
``canary`` alias (so clearing the alias alone sends 100% to the champion); the *release lock* is
the alias ``release-lock`` taken by compare-and-swap from empty; its *lease* is renewed with
``release.lease`` events carrying an expiry, so a crashed release can be told from a live one.
The server and the canary runner both go through this module and nothing else.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from registry.errors import AliasConflictError, ReleaseLockedError

if TYPE_CHECKING:
    from registry.catalog import Catalog

__all__ = [
    "CANARY_ALIAS",
    "CHAMPION_ALIAS",
    "LEASE_EVENT",
    "LOCK_ALIAS",
    "WEIGHT_EVENT",
    "ReleaseLease",
    "ReleaseState",
    "ReleaseStateReader",
    "acquire_release_lock",
    "clear_canary",
    "publish_weight",
    "repair_releases",
]

CHAMPION_ALIAS = "champion"
CANARY_ALIAS = "canary"
LOCK_ALIAS = "release-lock"
WEIGHT_EVENT = "canary.weight"
LEASE_EVENT = "release.lease"
RELEASED_EVENT = "release.released"


@dataclass(frozen=True)
class ReleaseState:
    """Who serves a model right now: champion, canary, the canary's traffic share, shadow mode."""

    model: str
    champion: int | None
    canary: int | None
    weight: float  # percent of traffic routed to the canary, 0..100 (0 when no canary)
    shadow: bool  # canary scored on mirrored traffic only; the champion answers
    locked_by: int | None  # version whose release holds the lock, if any
    orphaned: bool = False  # a canary whose release is gone (no lock or lease expired)


class ReleaseStateReader:
    """Reads ``ReleaseState`` incrementally: two small queries per poll, whatever the history.

    A canary is only routed while a live release holds the lock: one whose process died gets
    0% at once (``orphaned``), before anyone runs ``repair_releases``. ``clock`` is the wall
    clock lease expiries are compared with (``time.time``; tests pass a manual one).
    """

    def __init__(self, catalog: Catalog, *, clock: Callable[[], float] = time.time) -> None:
        self._catalog = catalog
        self._clock = clock
        self._last_id: dict[str, int] = {}
        self._weight: dict[str, dict[str, Any]] = {}
        self._lease_until: dict[str, float] = {}

    def read(self, model: str) -> ReleaseState:
        """The current state of ``model`` (one alias query plus new weight events)."""
        aliases = self._catalog.aliases(model)
        since = self._last_id.get(model)
        if since is None:  # first read: only the latest of each kind matters (tails of one)
            events = [
                *self._catalog.events(model, kinds=[WEIGHT_EVENT], limit=1),
                *self._catalog.events(model, kinds=[LEASE_EVENT], limit=1),
            ]
        else:
            events = self._catalog.events(model, kinds=[WEIGHT_EVENT, LEASE_EVENT], since_id=since)
        for event in sorted(events, key=lambda e: e.id):
            if event.kind == WEIGHT_EVENT:
                self._weight[model] = event.payload
            else:
                self._lease_until[model] = float(event.payload.get("expires_at", 0.0))
        self._last_id[model] = max((e.id for e in events), default=since or 0)
        canary = aliases.get(CANARY_ALIAS)
        locked_by = aliases.get(LOCK_ALIAS)
        orphaned = canary is not None and (
            locked_by is None or self._lease_until.get(model, 0.0) <= self._clock()
        )
        latest = self._weight.get(model, {})
        weight, shadow = 0.0, False
        if canary is not None and not orphaned and latest.get("version") == canary:
            weight = float(latest.get("weight", 0.0))
            shadow = bool(latest.get("shadow", False))
        return ReleaseState(
            model=model,
            champion=aliases.get(CHAMPION_ALIAS),
            canary=canary,
            weight=max(0.0, min(100.0, weight)),
            shadow=shadow,
            locked_by=locked_by,
            orphaned=orphaned,
        )


def publish_weight(
    catalog: Catalog,
    model: str,
    version: int | None,
    weight: float,
    *,
    shadow: bool = False,
    actor: str = "system",
    reason: str = "",
) -> None:
    """Record that ``version`` (the canary) gets ``weight`` percent of traffic."""
    catalog.append_event(
        WEIGHT_EVENT,
        model=model,
        versions=[version] if version is not None else [],
        reason=reason or f"canary weight {weight:g}%",
        actor=actor,
        payload={"version": version, "weight": float(weight), "shadow": shadow},
    )


def clear_canary(catalog: Catalog, model: str, *, reason: str, actor: str) -> int | None:
    """Send 100% back to the champion: clear the canary alias (by CAS), then record weight 0."""
    for _ in range(5):
        current = catalog.get_alias(model, CANARY_ALIAS)
        if current is None:
            return None
        try:  # the alias first: the server drops the canary the moment it is gone
            catalog.set_alias(
                model, CANARY_ALIAS, None, expected=current, reason=reason, actor=actor
            )
        except AliasConflictError:
            continue
        publish_weight(catalog, model, current, 0.0, actor=actor, reason=reason)
        return current
    raise AliasConflictError(f"canary alias of {model!r} keeps changing; retry the rollback")


class ReleaseLease:
    """The release lock of one model, held by one release until ``release()`` or expiry.

    Expiries are wall-clock times from ``clock`` (``time.time``), shared with every reader.
    """

    def __init__(
        self,
        catalog: Catalog,
        model: str,
        version: int,
        ttl_s: float,
        actor: str,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self.catalog, self.model, self.version = catalog, model, version
        self.ttl_s, self.actor = ttl_s, actor
        self._clock = clock
        self.holder = uuid.uuid4().hex
        self.held = False
        self._renewed_at = float("-inf")

    def renew(self) -> None:
        """Push the expiry ``ttl_s`` into the future; writes at most every quarter ttl."""
        now = time.monotonic()
        if now - self._renewed_at < self.ttl_s / 4:
            return
        self._renewed_at = now
        self.catalog.append_event(
            LEASE_EVENT,
            model=self.model,
            versions=[self.version],
            reason="release lease",
            actor=self.actor,
            payload={"holder": self.holder, "expires_at": self._clock() + self.ttl_s},
        )

    def release(self) -> None:
        """Give the lock back (idempotent); a lock someone else took over is left alone."""
        if not self.held:
            return
        self.held = False
        try:
            self.catalog.set_alias(
                self.model,
                LOCK_ALIAS,
                None,
                expected=self.version,
                reason="release finished",
                actor=self.actor,
            )
        except AliasConflictError:
            return
        self.catalog.append_event(
            RELEASED_EVENT,
            model=self.model,
            versions=[self.version],
            reason="release lock released",
            actor=self.actor,
            payload={"holder": self.holder},
        )


def acquire_release_lock(
    catalog: Catalog,
    model: str,
    version: int,
    *,
    ttl_s: float,
    actor: str,
    clock: Callable[[], float] = time.time,
) -> ReleaseLease:
    """Take the model's release lock or raise ``ReleaseLockedError`` naming the holder.

    ``clock`` dates the lease's expiry (wall-clock seconds; tests pass a manual clock)."""
    lease = ReleaseLease(catalog, model, version, ttl_s, actor, clock=clock)
    lease.renew()  # the expiry exists before the lock does, so repair never sees a bare lock
    try:
        catalog.set_alias(
            model, LOCK_ALIAS, version, expected=None, reason="release started", actor=actor
        )
    except AliasConflictError as exc:
        holder = catalog.get_alias(model, LOCK_ALIAS)
        raise ReleaseLockedError(
            f"a release of {model!r} version {holder} is in progress; wait for it to finish "
            f"or run `retrain rollback {model}` to abort it"
        ) from exc
    lease.held = True
    return lease


def _lease_expires_at(catalog: Catalog, model: str) -> float:
    events = catalog.events(model, kinds=[LEASE_EVENT], limit=1)
    return float(events[-1].payload.get("expires_at", 0.0)) if events else 0.0


def repair_releases(
    catalog: Catalog,
    models: Iterable[str] | None = None,
    *,
    actor: str = "repair",
    now: float | None = None,
) -> list[str]:
    """Leave no half-released model: a canary without a live release goes back to 0%.

    A release whose lease expired (its process crashed or was killed) loses its canary and
    its lock; a live release is left alone. Returns the models that were repaired.
    """
    now = time.time() if now is None else now
    repaired: list[str] = []
    for model in list(models) if models is not None else catalog.list_models():
        aliases = catalog.aliases(model)
        locked_by = aliases.get(LOCK_ALIAS)
        canary = aliases.get(CANARY_ALIAS)
        if locked_by is None and canary is None:
            continue
        if locked_by is not None and _lease_expires_at(catalog, model) > now:
            continue  # a live release owns this canary
        reason = "repair: release ended without finishing; champion back to 100%"
        if canary is not None:
            clear_canary(catalog, model, reason=reason, actor=actor)
            catalog.append_event(
                "canary.aborted",
                model=model,
                versions=[canary],
                reason=reason,
                actor=actor,
                payload={"repair": True},
            )
        if locked_by is not None:
            try:
                catalog.set_alias(
                    model, LOCK_ALIAS, None, expected=locked_by, reason=reason, actor=actor
                )
            except AliasConflictError:
                continue  # a new release took over meanwhile
        repaired.append(model)
    return repaired
