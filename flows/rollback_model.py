"""``rollback-model``: move the champion back, by hand or from an alert."""

from __future__ import annotations

from prefect import flow

from flows.context import registry_for
from retrain.config.settings import Settings
from tasks.release.rollback import RollbackResult
from tasks.release_tasks import roll_back_model
from tasks.reporting.artifacts import artifact_key, publish_table

__all__ = ["rollback_model"]


@flow(name="rollback-model", log_prints=True)
def rollback_model(
    model: str,
    reason: str,
    to_version: int | None = None,
    settings: Settings | None = None,
) -> RollbackResult:
    """Point ``model``'s champion at ``to_version`` (default: the previous good champion)."""
    with registry_for(settings) as (_settings, registry):
        result: RollbackResult = roll_back_model(
            registry, model, reason, to_version, actor="rollback-model"
        )
        row = {
            "model": model,
            "from_version": result.from_version,
            "to_version": result.to_version,
            "reason": reason,
        }
        publish_table(artifact_key("rollback", model), [row], description="Rollback")
        print(f"{model}: champion v{result.from_version} → v{result.to_version} ({reason})")
        return result
