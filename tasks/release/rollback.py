"""Rollback: move the champion back (compare-and-swap) and drop any canary, in milliseconds.

Only the catalog is touched: no bundle is loaded, so a rollback works while the blob store is
unreachable or the new bundle is broken. The server already holds the previous champion in
memory and follows the alias within one poll interval.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from registry.champions import freeze_holdout, previous_champion
from registry.errors import ConfigError
from registry.release import CHAMPION_ALIAS, clear_canary

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["RollbackResult", "rollback"]


@dataclass(frozen=True)
class RollbackResult:
    """What a rollback changed: champion ``from_version`` -> ``to_version``, canary dropped."""

    model: str
    from_version: int | None
    to_version: int | None
    canary_dropped: int | None
    elapsed_s: float


def rollback(
    registry: Registry | Any,
    model: str,
    to_version: int | None = None,
    *,
    reason: str,
    actor: str = "system",
    extra: Mapping[str, Any] | None = None,
) -> RollbackResult:
    """Send ``model``'s traffic back to ``to_version`` (default: the previous good champion).

    Any canary in flight is dropped first. Appends ``model.rolled_back``; the rolled-back
    version is marked ``rejected`` so it is never chosen as a rollback target again, and the
    restored champion's holdout grades candidates again (``freeze_holdout``). ``extra`` goes
    into that event's payload (the alert receiver records its idempotency key there).
    """
    if not reason.strip():
        raise ConfigError("a rollback needs a reason (--reason TEXT)")
    started = time.perf_counter()
    catalog = registry.catalog
    current = catalog.get_alias(model, CHAMPION_ALIAS)
    if to_version is not None:
        catalog.get_model_version(model, to_version)  # NotFoundError names a bad --to
    dropped = clear_canary(catalog, model, reason=f"rollback: {reason}", actor=actor)
    if to_version is None:
        to_version = previous_champion(catalog, model)
    if to_version is None or to_version == current:
        if dropped is None:
            raise ConfigError(f"{model} has no earlier champion to roll back to; pass --to VERSION")
        catalog.append_event(
            "canary.aborted",
            model=model,
            versions=[dropped],
            reason=f"rollback: {reason}",
            actor=actor,
            payload={"by": "rollback"},
        )
        catalog.set_status(model, dropped, "rejected", reason=f"rolled back: {reason}", actor=actor)
        return RollbackResult(model, current, current, dropped, time.perf_counter() - started)
    catalog.set_alias(
        model, CHAMPION_ALIAS, to_version, expected=current, reason=reason, actor=actor
    )
    elapsed = time.perf_counter() - started  # the server only needs the alias; the rest is record
    catalog.set_status(model, to_version, "champion", reason=f"rollback: {reason}", actor=actor)
    if current is not None:
        catalog.set_status(model, current, "rejected", reason=f"rolled back: {reason}", actor=actor)
    # The holdout goes back with the champion, so the next candidate is graded on its data.
    freeze_holdout(registry.catalog, model, to_version, by="rollback")
    catalog.append_event(
        "model.rolled_back",
        model=model,
        versions=[v for v in (current, to_version) if v is not None],
        reason=reason,
        actor=actor,
        payload={**(extra or {}), "from": current, "to": to_version, "canary_dropped": dropped},
    )
    return RollbackResult(model, current, to_version, dropped, elapsed)
