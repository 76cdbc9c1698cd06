"""Prefect tasks over the canary release and rollback functions (thin: call, return)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE

from registry.release import repair_releases
from tasks.release.rollback import RollbackResult, rollback

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["repair_model_releases", "roll_back_model"]


# Registries are live clients: inputs are not hashed for caching.
@task(name="roll-back-model", cache_policy=NO_CACHE)
def roll_back_model(
    registry: Registry, model: str, reason: str, to_version: int | None = None, actor: str = "flow"
) -> RollbackResult:
    """Move the champion back (default: the previous good champion)."""
    return rollback(registry, model, to_version, reason=reason, actor=actor)


@task(name="repair-model-releases", cache_policy=NO_CACHE)
def repair_model_releases(registry: Registry, models: list[str] | None = None) -> list[str]:
    """Clear canaries left behind by releases that died; returns the repaired models."""
    return repair_releases(registry.catalog, models)
