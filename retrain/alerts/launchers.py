"""Launchers: how the alert receiver starts a retrain. Prefect in production, a fake in tests.

``RetrainLauncher`` is the whole protocol: start a retrain under an idempotency key (the same
key must give the same run), and say whether a run is still going. ``PrefectLauncher`` calls
``run_deployment`` on ``retrain-model/retrain-<model>`` and returns at once; ``RecordingLauncher``
records calls and honours keys the same way, so tests and benchmarks need no Prefect server.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol, cast
from uuid import UUID

from registry.errors import LaunchError
from retrain.deployments import deployment_names

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

__all__ = ["PrefectLauncher", "RecordingLauncher", "RetrainLauncher"]


class RetrainLauncher(Protocol):
    """Starts retrain runs; Prefect in production, a recorder in tests."""

    def start_retrain(self, model: str, *, idempotency_key: str, reason: str) -> str:
        """Start (or find, for a repeated key) the retrain of ``model``; returns the run id."""
        ...

    def is_running(self, run_id: str) -> bool:
        """Whether the run is still scheduled, pending or running."""
        ...


class PrefectLauncher:
    """Starts ``retrain-model/retrain-<model>`` through ``run_deployment`` (returns at once)."""

    def warm(self) -> None:
        """Import Prefect's client now, so the first alert does not pay for it."""
        import prefect.deployments  # noqa: F401

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
    """A launcher that records calls and honours idempotency keys like Prefect does."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.runs: dict[str, str] = {}
        self.running: set[str] = set()
        self._lock = threading.Lock()

    def start_retrain(self, model: str, *, idempotency_key: str, reason: str) -> str:
        with self._lock:
            self.calls.append((model, idempotency_key, reason))
            run_id = self.runs.setdefault(idempotency_key, f"run-{len(self.runs) + 1}")
            return run_id

    def is_running(self, run_id: str) -> bool:
        return run_id in self.running
