"""``retrain pipelines``: validate, register, list and show pipeline specs."""

from __future__ import annotations

from pathlib import Path

import typer

from retrain.cli.app import pipelines_app
from retrain.cli.common import console, open_registry, render_table

__all__ = ["ls", "register", "show", "validate"]


@pipelines_app.command()
def validate(spec: Path = typer.Argument(..., help="Pipeline spec (YAML).")) -> None:
    """Check a spec without registering it."""
    from retrain.specs import load_spec

    loaded = load_spec(spec)
    console.print(f"[green]ok[/] {loaded.name} ({loaded.task} on {loaded.target}) {loaded.digest}")


@pipelines_app.command()
def register(
    spec: Path = typer.Argument(..., help="Pipeline spec (YAML)."),
    work_pool: str | None = typer.Option(
        None, "--work-pool", help="Put the deployments in this work pool (default: served)."
    ),
    deploy: bool = typer.Option(
        True, "--deploy/--no-deploy", help="Create or update its Prefect deployments."
    ),
) -> None:
    """Validate a spec, store it content-hashed, and create or update its deployments."""
    from retrain.deployments import apply_deployments, deployment_names, prefect_api_url
    from retrain.spec_store import register_spec
    from retrain.specs import load_spec

    loaded = load_spec(spec)
    registry = open_registry()
    try:
        summary = register_spec(registry, loaded)
    finally:
        registry.close()
    verb = "registered" if summary.created else "unchanged"
    console.print(f"[green]{verb}[/] pipeline [bold]{loaded.name}[/] {summary.digest}")
    names = deployment_names(loaded.name)
    all_names = [names.retrain, names.monitor, names.retrain_on_drift, names.rollback]
    if not deploy:
        return
    api = prefect_api_url()
    if api is None:
        console.print(f"No Prefect API reachable: `retrain up` will serve {', '.join(all_names)}.")
        return
    ids = apply_deployments(loaded, work_pool_name=work_pool)
    rows = [{"deployment": name, "id": ids.get(name)} for name in all_names]
    console.print(render_table(f"Deployments on {api}", rows))


@pipelines_app.command("ls")
def ls() -> None:
    """List registered pipelines (their current spec)."""
    from retrain.spec_store import list_registered_pipelines

    registry = open_registry()
    try:
        pipelines = list_registered_pipelines(registry)
    finally:
        registry.close()
    if not pipelines:
        console.print("No pipelines registered; try `retrain pipelines register SPEC`.")
        return
    rows = [
        {
            "name": p.name,
            "task": p.task,
            "target": p.target,
            "retrain cron": p.retrain_cron,
            "monitor cron": p.monitor_cron,
            "on drift": f"retrain, {p.cooldown_minutes} min cooldown" if p.drift_trigger else "off",
            "digest": p.digest[7:19],
        }
        for p in pipelines
    ]
    console.print(render_table("Pipelines", rows))


@pipelines_app.command()
def show(name: str = typer.Argument(..., help="Pipeline (spec) name.")) -> None:
    """Print a registered spec as YAML, with its digest and deployments."""
    import yaml

    from retrain.deployments import deployment_names
    from retrain.spec_store import get_registered_spec

    registry = open_registry()
    try:
        spec = get_registered_spec(registry, name)
    finally:
        registry.close()
    names = deployment_names(spec.name)
    console.print(f"# {spec.name} {spec.digest}", highlight=False)
    console.print(
        f"# deployments: {names.retrain}, {names.monitor}, {names.retrain_on_drift}, "
        f"{names.rollback}",
        highlight=False,
    )
    text = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
    console.print(text, highlight=False, markup=False, end="")
