"""What every flow opens first: the settings, the registry, the pipeline's spec.

Flows are entry points (deployments start them in fresh processes), so they read the one
``Settings`` here and build clients through the wiring module. The front door is imported
inside the function, at run time only, so importing a flow stays cheap and one-way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from registry.store import Registry
    from retrain.settings import Settings
    from retrain.specs import PipelineSpec
    from tasks.canary_sources import MetricsSource
    from tasks.tracking import MlflowTracker

__all__ = ["PipelineContext", "flow_run_info", "open_pipeline", "open_registry"]


@dataclass
class PipelineContext:
    """One pipeline's spec with the clients its tasks need."""

    settings: Settings
    registry: Registry
    spec: PipelineSpec
    spec_digest: str

    @property
    def checkpoints(self) -> Path:
        """Where interrupted training runs keep their checkpoints."""
        return self.settings.home / "checkpoints"

    @property
    def s3(self) -> dict[str, str | None]:
        """S3 connection settings for dataset sources."""
        return self.settings.s3_options

    def tracker(self) -> MlflowTracker:
        """MLflow tracking as the settings configure it."""
        from retrain.wiring import build_tracker

        return build_tracker(self.settings)

    def metrics_source(self) -> MetricsSource:
        """Where canary analysis reads per-version stats."""
        from retrain.wiring import build_metrics_source

        return build_metrics_source(self.settings)


@contextmanager
def open_registry() -> Iterator[tuple[Settings, Registry]]:
    """The settings and the registry they name, closed on exit."""
    from retrain.settings import Settings
    from retrain.wiring import build_registry

    settings = Settings()
    registry = build_registry(settings)
    try:
        yield settings, registry
    finally:
        registry.close()


@contextmanager
def open_pipeline(name: str) -> Iterator[PipelineContext]:
    """The registered pipeline ``name`` (NotFoundError says how to register one)."""
    from retrain.spec_store import get_registered_spec

    with open_registry() as (settings, registry):
        spec = get_registered_spec(registry, name)
        yield PipelineContext(settings, registry, spec, spec.digest)


def flow_run_info(trigger: str) -> dict[str, Any]:
    """Run facts recorded with a model version: the Prefect flow run and what started it."""
    from prefect.runtime import flow_run

    return {"flow_run_id": str(flow_run.id) if flow_run.id else None, "trigger": trigger}
