"""Prefect tasks over the canary release and rollback functions (thin: call, log, return).

What they decide is logged through Prefect's run logger, so the UI's logs show it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from registry.release import repair_releases
from tasks.pipeline.retries import TRANSIENT_RETRIES
from tasks.release.rollback import RollbackResult, rollback

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["repair_model_releases", "roll_back_model"]


# Registries are live clients: inputs are not hashed for caching. A rollback is not retried
# (a second try after a lost answer would move the champion back twice); the repair is, as
# it changes nothing once done.
@task(name="roll-back-model", cache_policy=NO_CACHE)
def roll_back_model(
    registry: Registry, model: str, reason: str, to_version: int | None = None, actor: str = "flow"
) -> RollbackResult:
    """Move the champion back (default: the previous good champion)."""
    result = rollback(registry, model, to_version, reason=reason, actor=actor)
    get_run_logger().info(
        "rolled back %s: champion v%s -> v%s, canary dropped: %s (%s)",
        model, result.from_version, result.to_version, result.canary_dropped, reason,
    )  # fmt: skip
    return result


@task(name="repair-model-releases", cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
def repair_model_releases(registry: Registry, models: list[str] | None = None) -> list[str]:
    """Clear canaries left behind by releases that died; returns the repaired models."""
    repaired = repair_releases(registry.catalog, models)
    if repaired:
        get_run_logger().info("cleared canaries left by releases that died: %s", repaired)
    return repaired
