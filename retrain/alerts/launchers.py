"""Launchers: how the alert receiver acts. Prefect in production, a fake in tests.

``RetrainLauncher``: start a retrain under an idempotency key (the same key must give the same
run), and say whether a run is still going. ``RollbackLauncher``: roll a model back under an
idempotency key. ``PrefectLauncher`` calls ``run_deployment`` on
``retrain-model/retrain-<model>`` and returns at once; a launcher without ``start_rollback``
(Prefect's among them) has its rollbacks done in the registry directly by the dispatcher
(``retrain.alerts.rollbacks.DirectRollbacks``: milliseconds, with Prefect up or down).
``RecordingLauncher`` records both and honours keys the same way, so tests and benchmarks need
no Prefect server (given a registry, its rollbacks are real ones).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol, cast, runtime_checkable
from uuid import UUID

from registry.errors import LaunchError
from retrain.alerts.rollbacks import DirectRollbacks
from retrain.deployments import deployment_names

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

    from registry.store import Registry

__all__ = ["PrefectLauncher", "RecordingLauncher", "RetrainLauncher", "RollbackLauncher"]


class RetrainLauncher(Protocol):
    """Starts retrain runs; Prefect in production, a recorder in tests."""

    def start_retrain(self, model: str, *, idempotency_key: str, reason: str) -> str:
        """Start (or find, for a repeated key) the retrain of ``model``; returns the run id."""
        ...

    def is_running(self, run_id: str) -> bool:
        """Whether the run is still scheduled, pending or running."""
        ...


@runtime_checkable
class RollbackLauncher(Protocol):
    """Rolls a model back for a rollback alert (``DirectRollbacks`` unless the launcher can)."""

    def start_rollback(self, model: str, *, idempotency_key: str, reason: str) -> str:
        """Roll ``model`` back to its previous good champion now; says what moved (``v2 ->
        v1``). ConfigError when there is nothing to roll back to; LaunchError: retry later."""
        ...


class PrefectLauncher:
    """Starts ``retrain-model/retrain-<model>`` through ``run_deployment`` (returns at once)."""

    def warm(self) -> None:
        """Import Prefect's client now, so the first alert does not pay for it."""
        import prefect.deployments
        import prefect.events  # noqa: F401

    def start_retrain(self, model: str, *, idempotency_key: str, reason: str) -> str:
        from prefect.deployments import run_deployment
        from prefect.exceptions import PrefectException
        from prefect.settings import get_current_settings

        if not get_current_settings().api.url:
            # Without a configured API, Prefect would start a throwaway in-process server.
            raise LaunchError(f"no Prefect API configured (PREFECT_API_URL) to retrain {model}")
        try:
            run = run_deployment(
                deployment_names(model).retrain_full,
                parameters={"pipeline": model, "trigger": "alert"},
                idempotency_key=idempotency_key,
                timeout=0,
                as_subflow=False,
                tags=["alert", f"model:{model}"],
            )
        except (PrefectException, OSError, RuntimeError, ValueError) as exc:
            raise LaunchError(f"could not start a retrain of {model}: {exc}") from exc
        # run_deployment is typed sync-or-async; called from sync code it is the flow run.
        return str(cast("FlowRun", run).id)

    def is_running(self, run_id: str) -> bool:
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(UUID(run_id)).state
        except Exception:  # unknown means finished: never fold alerts into a lost run forever
            return False
        return state is not None and not state.is_final()


class RecordingLauncher:
    """A launcher that records calls and honours idempotency keys like Prefect does; given a
    ``registry``, its rollbacks are done there (``DirectRollbacks``), else only recorded."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.rollbacks: list[tuple[str, str, str]] = []
        self.runs: dict[str, str] = {}
        self.running: set[str] = set()
        self._lock = threading.Lock()
        self._direct = DirectRollbacks(registry) if registry is not None else None

    def start_retrain(self, model: str, *, idempotency_key: str, reason: str) -> str:
        with self._lock:
            self.calls.append((model, idempotency_key, reason))
            run_id = self.runs.setdefault(idempotency_key, f"run-{len(self.runs) + 1}")
            return run_id

    def is_running(self, run_id: str) -> bool:
        return run_id in self.running

    def start_rollback(self, model: str, *, idempotency_key: str, reason: str) -> str:
        with self._lock:
            self.rollbacks.append((model, idempotency_key, reason))
            if self._direct is None:
                return self.runs.setdefault(idempotency_key, f"rollback-{len(self.rollbacks)}")
        return self._direct.start_rollback(model, idempotency_key=idempotency_key, reason=reason)
