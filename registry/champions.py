"""Champion lineage: which versions have been champion, which one a rollback returns to, and
the holdout that follows the champion (the data its challengers are graded on).

Read from the event log's ``alias.set`` events and ``holdout`` artifacts: nothing beyond
the catalog.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry.errors import NotFoundError
from registry.release import CHAMPION_ALIAS

if TYPE_CHECKING:
    from registry.catalog import Catalog

__all__ = [
    "HOLDOUT_KIND",
    "champion_history",
    "freeze_holdout",
    "frozen_holdout",
    "previous_champion",
]

HOLDOUT_KIND = "holdout"


def champion_history(catalog: Catalog, model: str) -> list[int]:
    """Every version the champion alias pointed at, oldest first (repeats kept)."""
    return [
        int(event.payload["version"])  # registry.aliases writes {"alias", "version", "previous"}
        for event in catalog.events(model, kinds=["alias.set"])
        if event.payload.get("alias") == CHAMPION_ALIAS
    ]


def previous_champion(catalog: Catalog, model: str) -> int | None:
    """The last champion before the current one that was not rejected, or None."""
    seen = {catalog.get_alias(model, CHAMPION_ALIAS)}
    for version in reversed(champion_history(catalog, model)):
        if version in seen:  # the current one, or one already found rejected
            continue
        seen.add(version)
        try:
            record = catalog.get_model_version(model, version)
        except NotFoundError:
            continue
        if record.status != "rejected":
            return version
    return None


def frozen_holdout(catalog: Catalog, model: str) -> str | None:
    """Digest of the holdout candidates of ``model`` are graded on: the current champion's.

    It follows the champion alias itself, not the route that set it (the flow, ``retrain
    canary``, ``retrain rollback``), so it cannot fall behind a champion change. None without a
    champion, or when no holdout was ever recorded for one.
    """
    champion = catalog.get_alias(model, CHAMPION_ALIAS)
    if champion is None:
        return None
    return _holdout_of(catalog, model, champion) or _latest_holdout(catalog, model)


def freeze_holdout(catalog: Catalog, model: str, version: int, *, by: str) -> str | None:
    """Record that ``version``, now champion, brings the holdout from now on (``by``: the route).

    Every route that makes a champion calls this, so the ``holdout`` artifacts tell which
    holdout graded which champion's challengers. A champion trained outside a pipeline has no
    holdout of its own and keeps the one in force, which the candidate never trained on either.
    Idempotent; returns the digest recorded, None when there is none to record.
    """
    digest = _holdout_of(catalog, model, version) or _latest_holdout(catalog, model)
    if digest is None:
        return None
    latest = catalog.latest_artifact(HOLDOUT_KIND, model)
    if latest is None or (latest.digest, latest.meta.get("version")) != (digest, version):
        catalog.register_artifact(HOLDOUT_KIND, model, digest, meta={"version": version, "by": by})
    return digest


def _holdout_of(catalog: Catalog, model: str, version: int) -> str | None:
    """``version``'s own holdout (split off the batch it was trained on), else the one recorded
    when it became champion."""
    own = catalog.get_model_version(model, version).lineage.get("holdout_digest")
    if own:
        return str(own)
    for record in reversed(catalog.artifacts(HOLDOUT_KIND, model)):
        if record.meta.get("version") == version:
            return record.digest
    return None


def _latest_holdout(catalog: Catalog, model: str) -> str | None:
    record = catalog.latest_artifact(HOLDOUT_KIND, model)
    return record.digest if record is not None else None
