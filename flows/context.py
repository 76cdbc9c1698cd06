"""What every flow opens first: the settings, the registry, the pipeline's spec.

Flows are entry points (a worker or ``retrain up`` starts them in fresh processes), so each
reads the one ``Settings`` here, or takes the one its caller passes as the ``settings``
parameter, and builds clients through the wiring module. Nothing talks to a flow through
``os.environ``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from retrain.config.settings import Settings

if TYPE_CHECKING:
    from registry.store import Registry
    from retrain.config.specs import PipelineSpec
    from tasks.pipeline.recipe import RetrainEnv

__all__ = [
    "PipelineContext",
    "flow_run_id",
    "open_pipeline",
    "registry_for",
    "resolve_trigger",
    "retrain_limit_name",
    "trigger_time",
]


def retrain_limit_name(model: str) -> str:
    """The global concurrency limit (one slot) a retrain of ``model`` holds while it runs."""
    return f"retrain-{model}"


@dataclass
class PipelineContext:
    """One pipeline's spec with the settings and registry its steps use."""

    settings: Settings
    registry: Registry
    spec: PipelineSpec

    def retrain_env(self, trigger: str) -> RetrainEnv:
        """Tracker, metrics source, the model server a release checks first, checkpoints
        and run facts for one retrain."""
        from retrain.config.wiring import build_metrics_source, build_server_probe, build_tracker
        from tasks.pipeline.recipe import RetrainEnv
        from tasks.training.plan import TrainingRun

        run = TrainingRun(
            tracker=build_tracker(self.settings),
            checkpoint_root=self.settings.home / "checkpoints",
            run_info={"flow_run_id": flow_run_id(), "trigger": trigger},
            actor="retrain-model",
            memory_budget_mb=self.settings.memory_budget_mb,
        )
        return RetrainEnv(
            metrics=build_metrics_source(self.settings),
            run=run,
            s3=self.settings.s3_options,
            actor="retrain-model",
            server=build_server_probe(self.settings),
            pii_key=self.pii_key,
            memory_budget_mb=self.settings.memory_budget_mb,
        )

    @property
    def pii_key(self) -> str | None:
        """The key of the spec's hashed PII columns (``RETRAIN_PII_KEY``), if set."""
        from retrain.config.spec_privacy import pii_key_of

        return pii_key_of(self.settings)


@contextmanager
def registry_for(settings: Settings | None) -> Iterator[tuple[Settings, Registry]]:
    """``settings`` (default: read from the environment and retrain.toml) and its registry."""
    from retrain.config.wiring import build_registry

    settings = settings if settings is not None else Settings()
    with closing(build_registry(settings)) as registry:
        yield settings, registry


@contextmanager
def open_pipeline(name: str, settings: Settings | None = None) -> Iterator[PipelineContext]:
    """The registered pipeline ``name`` (NotFoundError says how to register one)."""
    from retrain.config.spec_store import get_registered_spec

    with registry_for(settings) as (resolved, registry):
        yield PipelineContext(resolved, registry, get_registered_spec(registry, name))


def flow_run_id() -> str | None:
    """The id of the Prefect flow run this code runs in, if any."""
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def resolve_trigger(trigger: str | None) -> str:
    """What started this run: ``trigger`` when the caller says, else ``schedule`` for a run
    Prefect's scheduler created and ``manual`` for one started by hand (UI, CLI, API)."""
    if trigger:
        return trigger
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    return "schedule" if run is not None and run.auto_scheduled else "manual"


def trigger_time(as_of: datetime | None) -> datetime:
    """The time a trigger decision uses: ``as_of`` (a simulation, a backfill) or now."""
    if as_of is None:
        return datetime.now(UTC)
    return as_of if as_of.tzinfo is not None else as_of.replace(tzinfo=UTC)
