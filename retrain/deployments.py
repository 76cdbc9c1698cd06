"""Prefect deployments for a pipeline spec: built and applied to a Prefect API (served by
``retrain.local.serve_loop``).

Each registered model gets four deployments (names are part of the platform's interface):

=========================  ==================  ===============================================
deployment                 flow                starts
=========================  ==================  ===============================================
``retrain-<model>``        ``retrain-model``   on ``schedule.retrain_cron``, by hand, by alerts
``monitor-<model>``        ``monitor-drift``   on ``schedule.monitor_cron``
``retrain-on-drift-<m>``   ``retrain-model``   on the Prefect event ``ml.drift.detected`` for
                                               resource ``ml.model.<model>``
``rollback-<model>``       ``rollback-model``  by hand (``retrain rollback`` or the UI)
=========================  ==================  ===============================================

No two retrains of one model run at once: each retrain deployment has a concurrency limit of
one (the scheduled one queues, the drift-triggered one drops runs that arrive while one is in
flight, so a storm folds into it), and a global concurrency limit ``retrain-<model>`` with one
slot is created for the flow to hold, covering both deployments.

Prefect is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import httpx

from flows.context import retrain_limit_name
from registry.errors import ConfigError
from retrain.work_pools import place_in_pool
from tasks.data.drift_events import DRIFT_EVENT

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

    from retrain.config.specs import PipelineSpec

__all__ = [
    "ENTRYPOINTS",
    "DeploymentNames",
    "apply_deployments",
    "build_deployments",
    "create_retrain_limits",
    "delete_deployments",
    "deployment_definitions",
    "deployment_names",
    "prefect_api_url",
    "set_deployments_paused",
]


@dataclass(frozen=True)
class DeploymentNames:
    """The deployment names of one model (``flow-name/deployment-name`` for run_deployment)."""

    retrain: str
    monitor: str
    retrain_on_drift: str
    rollback: str

    @property
    def all(self) -> list[str]:
        """The four names, in the order above."""
        return [self.retrain, self.monitor, self.retrain_on_drift, self.rollback]

    @property
    def retrain_full(self) -> str:
        """``retrain-model/retrain-<model>``, the name ``run_deployment`` takes."""
        return f"retrain-model/{self.retrain}"


def deployment_names(model: str) -> DeploymentNames:
    """The four deployment names for ``model``."""
    return DeploymentNames(
        retrain=f"retrain-{model}",
        monitor=f"monitor-{model}",
        retrain_on_drift=f"retrain-on-drift-{model}",
        rollback=f"rollback-{model}",
    )


def create_retrain_limits(models: Sequence[str]) -> None:
    """Create (or reset to one slot) the retrain limit of each of ``models``."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for model in models:
            client.upsert_global_concurrency_limit_by_name(retrain_limit_name(model), 1)


# Where each deployment's flow lives, relative to the code folder (the one holding flows/) that
# a work pool deployment's pull step enters (retrain.work_pools); a worker loads it by path.
ENTRYPOINTS = {
    "retrain-model": "flows/retrain_model.py:retrain_model",
    "monitor-drift": "flows/monitor_drift.py:monitor_drift",
    "rollback-model": "flows/rollback_model.py:rollback_model",
}
_QUEUE_ONE = {"limit": 1, "collision_strategy": "ENQUEUE"}
_FOLD_INTO_RUNNING = {"limit": 1, "collision_strategy": "CANCEL_NEW"}


def deployment_definitions(spec: PipelineSpec) -> list[dict[str, Any]]:
    """The four deployments of ``spec`` as plain data, in ``prefect.yaml``'s own form.

    This is the one definition: ``build_deployments`` (``retrain up``, ``pipelines register``)
    and ``render_prefect_yaml`` (``retrain pipelines export``) both read it.
    """
    model = spec.name
    names = deployment_names(model)
    tz = spec.schedule.timezone
    common: dict[str, Any] = {"tags": [f"model:{model}", f"task:{spec.task}"]}

    def crons(expression: str | None) -> list[dict[str, str]]:
        return [] if expression is None else [{"cron": expression, "timezone": tz}]

    on_drift = {"pipeline": model, "trigger": "drift"}
    return [
        {
            "name": names.retrain,
            "entrypoint": ENTRYPOINTS["retrain-model"],
            "description": f"Retrain {model} on schedule or on request. {spec.description}".strip(),
            **common,
            # No trigger: the flow records "schedule" for cron runs and "manual" for the rest.
            "parameters": {"pipeline": model},
            "schedules": crons(spec.schedule.retrain_cron),
            "concurrency_limit": _QUEUE_ONE,
        },
        {
            "name": names.monitor,
            "entrypoint": ENTRYPOINTS["monitor-drift"],
            "description": f"Compare recent traffic of {model} with its champion's training data.",
            **common,
            "parameters": {"pipeline": model},
            "schedules": crons(spec.schedule.monitor_cron),
            "concurrency_limit": _QUEUE_ONE,
        },
        {
            "name": names.retrain_on_drift,
            "entrypoint": ENTRYPOINTS["retrain-model"],
            "description": f"Retrain {model} when drift is detected (cooldown in the flow).",
            **common,
            "parameters": on_drift,
            "concurrency_limit": _FOLD_INTO_RUNNING,
            "triggers": [_drift_trigger(spec)],
        },
        {
            "name": names.rollback,
            "entrypoint": ENTRYPOINTS["rollback-model"],
            "description": f"Move {model}'s champion back to the previous (or a named) version.",
            **common,
            "parameters": {"model": model, "reason": "manual rollback"},
        },
    ]


def _drift_trigger(spec: PipelineSpec) -> dict[str, Any]:
    """The event trigger of ``retrain-on-drift-<model>``: one retrain per drift event."""
    model = spec.name
    return {
        "type": "event",
        "name": f"retrain {model} on drift",
        "description": f"{DRIFT_EVENT} for ml.model.{model} starts one retrain.",
        "enabled": spec.triggers.drift,
        "expect": [DRIFT_EVENT],
        "match": {"prefect.resource.id": f"ml.model.{model}"},
        "for_each": ["prefect.resource.id"],
        "posture": "Reactive",
        "threshold": 1,
        "within": 0,
        "parameters": {"pipeline": model, "trigger": "drift"},
    }


def build_deployments(
    spec: PipelineSpec,
    *,
    work_pool_name: str | None = None,
    paused: bool = False,
    code_dir: str | None = None,
    image: str | None = None,
) -> list[RunnerDeployment]:
    """The four deployments of ``spec`` (not yet sent anywhere), from their definitions;
    ``paused``: created paused (a paused pipeline's, so applying them never resumes it).

    In a work pool they carry the pull step into the code folder (``code_dir``, default the
    worker's ``RETRAIN_CODE_DIR``) and ``image``, if any (``retrain.work_pools``)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from prefect.schedules import Cron

    from flows.monitor_drift import monitor_drift
    from flows.retrain_model import retrain_model
    from flows.rollback_model import rollback_model

    flows: dict[str, Any] = {
        ENTRYPOINTS["retrain-model"]: retrain_model,
        ENTRYPOINTS["monitor-drift"]: monitor_drift,
        ENTRYPOINTS["rollback-model"]: rollback_model,
    }
    built = []
    for d in deployment_definitions(spec):
        extra: dict[str, Any] = {}
        if "concurrency_limit" in d:
            extra["concurrency_limit"] = ConcurrencyLimitConfig.model_validate(
                d["concurrency_limit"]
            )
        deployment = flows[d["entrypoint"]].to_deployment(
            name=d["name"],
            description=d["description"],
            tags=d["tags"],
            version=spec.digest[7:19],
            parameters=d["parameters"],
            schedules=[Cron(s["cron"], timezone=s["timezone"]) for s in d.get("schedules", [])],
            triggers=[DeploymentEventTrigger.model_validate(x) for x in d.get("triggers", [])],
            paused=paused,
            **extra,
        )
        # ``to_deployment`` is typed sync-or-async; called from sync code it is the deployment.
        runner = cast("RunnerDeployment", deployment)
        if work_pool_name:
            place_in_pool(
                runner, d["entrypoint"], pool=work_pool_name, code_dir=code_dir, image=image
            )
        built.append(runner)
    return built


def prefect_api_url(*, timeout_s: float = 2.0) -> str | None:
    """The configured Prefect API URL when it answers its health check, else ``None``."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        return None
    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=timeout_s)
    except httpx.HTTPError:
        return None
    return url if response.status_code == 200 else None


def apply_deployments(
    spec: PipelineSpec,
    *,
    work_pool_name: str | None = None,
    paused: bool = False,
    code_dir: str | None = None,
    image: str | None = None,
) -> dict[str, str]:
    """Create or update ``spec``'s deployments and its retrain limit; name -> deployment id.
    ``code_dir`` and ``image`` place them in ``work_pool_name`` (see ``build_deployments``)."""
    from prefect.exceptions import PrefectException

    deployments = build_deployments(
        spec, work_pool_name=work_pool_name, paused=paused, code_dir=code_dir, image=image
    )
    try:
        create_retrain_limits([spec.name])
        return {d.name: str(d.apply()) for d in deployments}
    except (PrefectException, httpx.HTTPError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"could not create deployments for {spec.name!r}: {first}") from exc


def _flow_of(name: str, model: str) -> str:
    """The flow a deployment of ``model`` named ``name`` runs."""
    names = deployment_names(model)
    if name == names.monitor:
        return "monitor-drift"
    return "rollback-model" if name == names.rollback else "retrain-model"


def set_deployments_paused(model: str, paused: bool) -> list[str]:
    """Pause (or resume) every deployment of ``model`` on the configured Prefect API: paused,
    their schedules create no runs and their triggers start none. The names it found."""
    return _each_deployment(model, "pause" if paused else "resume")


def delete_deployments(model: str) -> list[str]:
    """Delete every deployment of ``model`` from the configured Prefect API (their past runs
    stay in Prefect's history). The names it found."""
    return _each_deployment(model, "delete")


def _each_deployment(model: str, action: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound, PrefectException

    done = []
    try:
        with get_client(sync_client=True) as client:
            for name in deployment_names(model).all:
                try:
                    found = client.read_deployment_by_name(f"{_flow_of(name, model)}/{name}")
                except ObjectNotFound:
                    continue
                if action == "delete":
                    client.delete_deployment(found.id)
                elif action == "pause":
                    client.pause_deployment(found.id)
                else:
                    client.resume_deployment(found.id)
                done.append(name)
    except (PrefectException, httpx.HTTPError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"could not {action} the deployments of {model!r}: {first}") from exc
    return done
