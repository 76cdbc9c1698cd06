"""``retrain models history NAME``: a model's event log, how its latest versions ended, and
why its latest runs failed, each failure in its one line.

Tables show digests short (``sha256:`` + 12 hex) unless ``--wide``; a failed run's line is
printed whole beneath the table, where no column folds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from registry.errors import ConfigError
from retrain.cli.app import models_app
from retrain.cli.common import open_registry
from retrain.cli.digests import shorten_digests
from retrain.terminal import console, render_table

if TYPE_CHECKING:
    from registry.records import EventRecord

__all__ = ["models_history"]

_FAILED_SHOWN = 5  # the latest failed runs told in full beneath the table


@models_app.command("history")
def models_history(
    name: Annotated[str, typer.Argument(help="Model name.")],
    limit: Annotated[int, typer.Option(help="Show the latest N events.")] = 50,
    wide: Annotated[bool, typer.Option("--wide", help="Show full digests.")] = False,
) -> None:
    """The model's event log (registrations, gate decisions, releases, rollbacks, failed
    runs), then how each recent version ended (promoted and how, aborted, not released,
    rejected at the gate) and why the latest runs failed. Digests are short unless --wide."""
    from registry.leftovers import FAILED_RUN_EVENT  # sqlalchemy: not at `retrain --help`
    from tasks.pipeline.release_step import final_outcomes

    with open_registry() as reg:
        events = reg.catalog.events(name, limit=limit)
        if not events and name not in reg.catalog.list_models():
            raise ConfigError(f"no model named {name!r}: see `retrain models ls`")
        outcomes = final_outcomes(reg.catalog, name)
    rows = [
        {
            "id": e.id,
            "when (UTC)": f"{e.created_at:%Y-%m-%d %H:%M:%S}",
            "event": e.kind,
            "versions": ", ".join(str(v) for v in e.versions),
            "why": e.reason,
            "by": e.actor,
            "details": _details(e),
        }
        for e in events
    ]
    console.print(render_table(f"history of {name}", rows if wide else shorten_digests(rows)))
    if outcomes:
        _say(f"how the latest versions of {name} ended:")
        for line in outcomes:
            _say(f"  {line}")
    failed = [e for e in events if e.kind == FAILED_RUN_EVENT][-_FAILED_SHOWN:]
    if failed:
        _say(f"why the latest runs of {name} failed:")
        for event in failed:
            _say(f"  {event.created_at:%Y-%m-%d %H:%M:%S} {event.reason}")


def _details(event: EventRecord) -> str:
    """The payload as ``key=value`` pairs; a failed run's without what its reason says."""
    from registry.leftovers import FAILED_RUN_EVENT

    payload: dict[str, Any] = dict(event.payload)
    if event.kind == FAILED_RUN_EVENT:
        for key in ("reason", "todo"):
            payload.pop(key, None)
        payload["snapshots"] = len(payload.get("snapshots") or [])
    return ", ".join(f"{k}={v}" for k, v in payload.items())


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)
