"""Champion lineage: which versions have been champion, and which one a rollback returns to.

Read from the event log's ``alias.set`` events, so it needs nothing beyond the catalog.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry.errors import NotFoundError
from registry.release import CHAMPION_ALIAS

if TYPE_CHECKING:
    from registry.catalog import Catalog

__all__ = ["champion_history", "previous_champion"]


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
