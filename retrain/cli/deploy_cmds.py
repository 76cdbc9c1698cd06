"""``retrain pipelines register``, ``run`` and ``serve``: a pipeline's Prefect deployments.

Each finds the Prefect API by itself: ``PREFECT_API_URL`` when set, else the ``retrain up``
running on this home (its ``stack.json``), and says so in one line when there is none.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer
from rich.text import Text

from registry.errors import ConfigError
from retrain.cli.app import pipelines_app
from retrain.cli.common import no_prefect_api, open_registry, settings, stack_prefect
from retrain.terminal import console, err_console, render_table

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

__all__ = ["register", "run", "serve"]


@pipelines_app.command()
def register(
    spec: Path = typer.Argument(..., help="Pipeline spec (YAML)."),
    work_pool: str | None = typer.Option(
        None, "--work-pool", help="Put the deployments in this work pool (default: served)."
    ),
    deploy: bool = typer.Option(
        True, "--deploy/--no-deploy", help="Create or update its Prefect deployments."
    ),
    code_dir: str | None = typer.Option(
        None,
        "--code-dir",
        help="With --work-pool: the folder holding flows/ on every worker (default: each "
        "worker's RETRAIN_CODE_DIR, else the folder the platform is installed from there).",
    ),
    image: str | None = typer.Option(
        None, "--image", help="With --work-pool: the container image its runs use (Kubernetes)."
    ),
    check: bool = typer.Option(
        True,
        "--check/--no-check",
        help="Read a sample of the source and check the target, features and contract against "
        "it (--no-check: the source is only reachable from workers).",
    ),
) -> None:
    """Validate a spec, check it against a sample of its data, store it content-hashed with its
    contract's suite, and create or update its deployments. Nothing is stored if a check fails."""
    from retrain.config.spec_checks import check_spec
    from retrain.config.spec_store import register_spec
    from retrain.config.specs import load_spec
    from retrain.deployments import apply_deployments, deployment_names, prefect_api_url
    from retrain.local.stack_state import read_live_state

    cfg = settings()
    loaded = load_spec(spec, folders=cfg.suite_folders)
    what = "checking the spec against a sample of its source" if check else "checking the spec"
    with console.status(what):
        report = check_spec(loaded, data=check, s3=cfg.s3_options)
    for line in report.warnings:
        warning = Text.assemble(("warning:", "yellow"), f" spec {spec.name}: {line}")
        err_console.print(warning, soft_wrap=True, highlight=False)
    if not report.ok:  # one line per problem, and nothing stored
        for line in report.problems:
            error = Text.assemble(("error:", "bold red"), f" spec {spec.name}: {line}")
            err_console.print(error, soft_wrap=True, highlight=False)
        raise typer.Exit(2)
    registry = open_registry()
    try:
        summary = register_spec(registry, loaded, folders=cfg.suite_folders)
    finally:
        registry.close()
    verb = "registered" if summary.created else "unchanged"
    state = " (paused)" if summary.paused else ""
    console.print(
        Text.assemble(
            (verb, "green"), " pipeline ", (loaded.name, "bold"), f" {summary.digest}{state}"
        )
    )
    if loaded.dataset.contract_digest is not None:
        console.print(
            f"contract {loaded.dataset.contract} stored as {loaded.dataset.contract_digest}",
            markup=False,
            highlight=False,
        )
    elif loaded.dataset.contract is None:
        console.print("no contract: batches are not validated", markup=False)
    if report.sample_rows is not None:
        console.print(
            f"checked against {report.sample_rows} rows of {loaded.dataset.source}",
            markup=False,
            highlight=False,
        )
    if not deploy:
        return
    all_names = deployment_names(loaded.name).all
    with stack_prefect() as configured:
        api = prefect_api_url() if configured else None
        if api is None:
            console.print(no_prefect_api(configured), markup=False)
            console.print(f"`retrain up` will serve {', '.join(all_names)}.", markup=False)
            return
        ids = apply_deployments(
            loaded,
            work_pool_name=work_pool,
            code_dir=code_dir,
            image=image,
            paused=summary.paused,
        )
    rows = [{"deployment": name, "id": ids.get(name)} for name in all_names]
    console.print(render_table(f"Deployments on {api}", rows))
    if work_pool is not None:
        where = code_dir or "its RETRAIN_CODE_DIR, else where the platform is installed"
        console.print(
            f"Any worker of {work_pool} runs them, from {where}: "
            f"`prefect worker start --pool {work_pool}`.",
            markup=False,
        )
        return
    stack = read_live_state(settings().home.resolve())
    if stack is not None and stack.prefect_api_url.rstrip("/") == api.rstrip("/"):
        console.print(
            f"`retrain up` (pid {stack.pid}) serves them within seconds: no restart needed.",
            markup=False,
        )
    else:
        console.print(
            f"Runs start once they are served: `retrain up`, or "
            f"`retrain pipelines serve {loaded.name}`.",
            markup=False,
        )


@pipelines_app.command()
def run(
    name: str = typer.Argument(..., help="Pipeline (spec) name."),
    rollback: bool = typer.Option(
        False, "--rollback", help="Run rollback-<name> instead of retrain-<name>."
    ),
) -> None:
    """Start a run of a pipeline's deployment now (recorded as a manual run)."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound, PrefectException
    from prefect.settings import get_current_settings

    from retrain.deployments import deployment_names, prefect_api_url

    names = deployment_names(name)
    full = f"rollback-model/{names.rollback}" if rollback else names.retrain_full
    with stack_prefect() as configured:
        api = prefect_api_url() if configured else None
        if api is None:
            raise ConfigError(no_prefect_api(configured))
        try:
            # Called from sync code, Prefect's dual sync/async API returns the run itself.
            flow_run = cast("FlowRun", run_deployment(full, timeout=0, tags=["manual"]))
        except ObjectNotFound:
            raise ConfigError(
                f"no deployment {full} on {api}: register the pipeline with "
                "`retrain pipelines register SPEC`"
            ) from None
        except PrefectException as exc:
            raise ConfigError(f"could not start {full}: {str(exc).splitlines()[0]}") from exc
        ui = get_current_settings().ui_url or api.rstrip("/").removesuffix("/api")
    console.print(
        Text.assemble(("started", "green"), f" {full} as {flow_run.name} ({flow_run.id})"),
        highlight=False,
    )
    console.print(f"follow it at {ui.rstrip('/')}/runs/flow-run/{flow_run.id}", markup=False)


@pipelines_app.command()
def serve(
    names: list[str] = typer.Argument(None, help="Pipelines to serve (default: all registered)."),
    watch_interval: float = typer.Option(
        2.0, min=0.2, help="Seconds between looks at the spec store and the Prefect API."
    ),
) -> None:
    """Serve the deployments of registered pipelines from this process (until Ctrl-C).

    A pipeline registered while it runs is served within a watch interval; a Prefect outage
    is waited out. With nothing registered yet, the shipped specs (retrain/pipelines/*.yaml)
    are registered first, so a fresh `retrain up` has something to run."""
    from retrain.config.spec_store import (
        get_registered_spec,
        list_registered_pipelines,
        register_spec,
    )
    from retrain.config.specs import default_spec_paths, load_spec
    from retrain.local.serve_loop import RegistrySpecs, serve_live

    with stack_prefect() as api, open_registry() as registry:
        if api is None:
            raise ConfigError(no_prefect_api(None))
        registered = list_registered_pipelines(registry)
        if not registered:
            for path in default_spec_paths():
                registered.append(register_spec(registry, load_spec(path)))
                console.print(f"registered shipped pipeline {path.stem}", markup=False)
        for wanted in names or []:
            get_registered_spec(registry, wanted)  # an unknown name: one line saying so
        what = ", ".join(names) if names else "every registered pipeline"
        console.print(
            f"serving {what}; newly registered specs within {watch_interval:g} s; Ctrl-C stops",
            markup=False,
        )
        serve_live(RegistrySpecs(registry, names or None), api_url=api, watch_s=watch_interval)
