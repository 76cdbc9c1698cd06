"""``retrain pipelines pause``, ``resume`` and ``rm``: stop and restart a pipeline's automatic
runs, or retire it, without losing its history.

- ``pause``: its deployments are paused on the Prefect API (schedules make no runs, drift
  triggers start none) and the alert receiver ignores its retrain alerts (reason ``paused``);
  runs started by hand still run. ``resume`` undoes both.
- ``rm``: it is marked removed in the registry (no longer listed, served or alertable; its
  versions, events and artifacts stay) and its deployments are deleted. Registering its spec
  again brings it back.

The registry is changed first; the Prefect API, when one answers, next. Without one, ``retrain
up`` (its served deployments) applies the change when it next runs.
"""

from __future__ import annotations

from collections.abc import Callable

import typer
from rich.text import Text

from registry.errors import ConfigError
from retrain.cli.app import pipelines_app
from retrain.cli.common import no_prefect_api, open_registry, stack_prefect
from retrain.terminal import console

__all__ = ["pause", "resume", "rm"]

_NAME_HELP = "Pipeline (spec) name."


@pipelines_app.command()
def pause(name: str = typer.Argument(..., help=_NAME_HELP)) -> None:
    """Pause a pipeline: no scheduled or alert-started runs until it is resumed."""
    from retrain.config.spec_store import PAUSED
    from retrain.deployments import set_deployments_paused

    _change(name, PAUSED, "paused", lambda: set_deployments_paused(name, True))


@pipelines_app.command()
def resume(name: str = typer.Argument(..., help=_NAME_HELP)) -> None:
    """Resume a paused pipeline: its schedules and alerts start runs again."""
    from retrain.config.spec_store import ACTIVE
    from retrain.deployments import set_deployments_paused

    _change(name, ACTIVE, "resumed", lambda: set_deployments_paused(name, False))


@pipelines_app.command("rm")
def rm(name: str = typer.Argument(..., help=_NAME_HELP)) -> None:
    """Remove a pipeline and its deployments; its history stays in the registry."""
    from retrain.config.spec_store import REMOVED
    from retrain.deployments import delete_deployments

    _change(name, REMOVED, "removed", lambda: delete_deployments(name))


def _change(name: str, state: str, verb: str, on_prefect: Callable[[], list[str]]) -> None:
    """Record ``state`` in the registry, then apply it to the deployments on Prefect."""
    from retrain.config.pipeline_state import set_pipeline_state
    from retrain.deployments import prefect_api_url

    with open_registry() as registry:
        change = set_pipeline_state(
            registry, name, state, actor="cli", reason=f"retrain pipelines {_command(verb)}"
        )
    if change.changed:
        console.print(Text.assemble((verb, "green"), " pipeline ", (name, "bold")))
    else:
        console.print(f"pipeline {name} was already {verb}", markup=False, highlight=False)
    with stack_prefect() as configured:
        api = prefect_api_url() if configured else None
        if api is None:
            console.print(no_prefect_api(configured), markup=False)
            console.print(
                "`retrain up` applies it to the deployments it serves when it runs.", markup=False
            )
            return
        try:
            done = on_prefect()
        except ConfigError as exc:
            raise ConfigError(f"{name} is {verb} in the registry, but {exc}; run it again") from exc
    if done:
        console.print(f"{verb} {', '.join(done)} on {api}", markup=False, highlight=False)
    else:
        console.print(f"no deployments of {name} on {api}", markup=False, highlight=False)


def _command(verb: str) -> str:
    return {"paused": "pause", "resumed": "resume", "removed": "rm"}[verb]
