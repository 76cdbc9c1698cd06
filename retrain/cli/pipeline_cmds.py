"""``retrain pipelines`` (validate, export, list, show specs) and ``retrain alerts``.

Registering, running and serving a pipeline's deployments live in ``deploy_cmds``."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import SecretStr
from rich.text import Text

from registry.errors import ConfigError
from retrain.cli.app import app, pipelines_app
from retrain.cli.common import listen_socket, open_registry, settings, stack_prefect
from retrain.cli.token_file import local_token
from retrain.terminal import console, render_table

__all__ = [
    "alerts_app",
    "export",
    "list_alerts",
    "ls",
    "send",
    "serve_alerts",
    "show",
    "validate",
]

alerts_app = typer.Typer(
    help="The alert receiver: monitoring alerts in, retrains and rollbacks out.",
    no_args_is_help=True,
)
app.add_typer(alerts_app, name="alerts")


@pipelines_app.command()
def validate(spec: Path = typer.Argument(..., help="Pipeline spec (YAML).")) -> None:
    """Check a spec (and read its contract's suite) without registering it."""
    from retrain.config.specs import load_spec

    loaded = load_spec(spec, folders=settings().suite_folders)
    what = f"{loaded.name} ({loaded.task} on {loaded.target}) {loaded.digest}"
    console.print(Text.assemble(("ok", "green"), " ", what))


@pipelines_app.command()
def export(
    output: Path = typer.Option(Path("prefect.yaml"), "--output", "-o", help="File to write."),
    check: bool = typer.Option(
        False, "--check", help="Exit 1 if the file differs from what would be written."
    ),
    pool: str = typer.Option(
        "retrain-local", "--pool", help="Work pool of every deployment (e.g. retrain-k8s)."
    ),
    image: str | None = typer.Option(
        None, "--image", help="Container image of every deployment (a Kubernetes pool)."
    ),
    code_dir: str | None = typer.Option(
        None,
        "--code-dir",
        help="Folder holding flows/ on every worker (default: each worker's RETRAIN_CODE_DIR, "
        "else the folder the platform is installed from there).",
    ),
) -> None:
    """Write prefect.yaml for the shipped specs, from the definitions `retrain up` serves.

    `--pool retrain-k8s --image IMAGE -o prefect-k8s.yaml`, then `prefect deploy --all
    --prefect-file prefect-k8s.yaml`, puts every deployment in the Kubernetes pool."""
    from retrain.config.specs import default_spec_paths, load_spec
    from retrain.prefect_yaml import render_prefect_yaml

    for option, value in (("--pool", pool), ("--image", image), ("--code-dir", code_dir)):
        if value is not None and not value.strip():
            raise ConfigError(f"{option} must not be empty")
    specs = [load_spec(p) for p in default_spec_paths()]
    text = render_prefect_yaml(specs, pool=pool, image=image, code_dir=code_dir)
    try:
        current = output.read_text(encoding="utf-8") if output.is_file() else None
        if check:
            if current != text:
                stale = Text.assemble(
                    (f"{output} is stale", "red"), ": run `retrain pipelines export`"
                )
                console.print(stale)
                raise typer.Exit(1)
            console.print(f"{output} is up to date", markup=False)
            return
        output.write_text(text, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"-o {output}: cannot be written ({reason})") from None
    where = f"pool {pool}" + (f", image {image}" if image else "")
    console.print(
        f"wrote {output}: {len(specs) * 4} deployments of {len(specs)} pipelines ({where})",
        markup=False,
    )


@pipelines_app.command("ls")
def ls() -> None:
    """List registered pipelines (their current spec) and their state: active or paused
    (`retrain pipelines pause`); removed ones are not listed."""
    from retrain.config.spec_store import list_registered_pipelines

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
            "state": p.state,
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

    from retrain.config.spec_store import get_registered_spec
    from retrain.deployments import deployment_names

    registry = open_registry()
    try:
        spec = get_registered_spec(registry, name)
    finally:
        registry.close()
    console.print(f"# {spec.name} {spec.digest}", highlight=False, markup=False)
    names = ", ".join(deployment_names(spec.name).all)
    console.print(f"# deployments: {names}", highlight=False, markup=False)
    text = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
    console.print(text, highlight=False, markup=False, end="")


@alerts_app.command("serve")
def serve_alerts() -> None:
    """Run the alert receiver (RETRAIN_ALERTS_HOST:RETRAIN_ALERTS_PORT) until Ctrl-C."""
    import uvicorn

    from retrain.alerts.receiver import create_app_from_settings

    cfg = settings()
    if cfg.alerts_token is None and cfg.alerts_hmac_secret is None:
        token_file, token = local_token(cfg.home)
        console.print(f"no RETRAIN_ALERTS_TOKEN set: bearer token in {token_file}", markup=False)
        cfg = cfg.model_copy(update={"alerts_token": SecretStr(token)})
    sock = listen_socket(cfg.alerts_host, cfg.alerts_port, "RETRAIN_ALERTS_PORT")
    # PREFECT_API_URL, else the API of the `retrain up` running on this home.
    with stack_prefect() as api, sock:
        if api is None:
            console.print(
                "[yellow]no Prefect API:[/] alerts are stored, but start no retrain until "
                "PREFECT_API_URL is set or `retrain up` runs on this home."
            )
        receiver = create_app_from_settings(cfg)
        console.print(
            f"alert receiver on http://{cfg.alerts_host}:{cfg.alerts_port}/alerts/<source>",
            markup=False,
        )
        uvicorn.Server(uvicorn.Config(receiver, log_level="warning")).run(sockets=[sock])


@alerts_app.command()
def send(
    model: str = typer.Argument(..., help="Model the alert is about."),
    reason: str = typer.Option("manual alert", help="Why (kept in the inbox)."),
    resolved: bool = typer.Option(False, "--resolved", help="Send a resolved alert."),
    rollback: bool = typer.Option(
        False, "--rollback", help="Ask for a rollback of the model instead of a retrain."
    ),
    url: str | None = typer.Option(None, help="Receiver base URL (default: from settings)."),
) -> None:
    """Post a generic alert to the receiver, authenticated like a monitoring system would."""
    import json
    import uuid

    import httpx

    from retrain.alerts.auth import sign_body

    cfg = settings()
    # Each send is a new incident: a key of its own, never folded away as a duplicate.
    document = {
        "model": model,
        "status": "resolved" if resolved else "firing",
        "reason": reason,
        "dedup_key": f"cli-{model}-{uuid.uuid4().hex}",
        "action": "rollback" if rollback else "retrain",
    }
    body = json.dumps(document).encode()
    headers = {"Content-Type": "application/json"}
    if cfg.alerts_hmac_secret is not None:
        headers |= sign_body(cfg.alerts_hmac_secret.get_secret_value(), body)
    else:
        token = cfg.alerts_token.get_secret_value() if cfg.alerts_token else None
        token = token or local_token(cfg.home)[1]
        headers["Authorization"] = f"Bearer {token}"
    base = url or f"http://{cfg.alerts_host}:{cfg.alerts_port}"
    try:
        response = httpx.post(f"{base}/alerts/generic", content=body, headers=headers, timeout=10)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise ConfigError(
            f"alert receiver at {base} unreachable ({exc}); is `retrain up` running?"
        ) from exc
    if response.status_code != 202:
        raise ConfigError(f"receiver answered {response.status_code}: {response.text.strip()}")
    console.print(json.dumps(response.json()), highlight=False, markup=False)


@alerts_app.command("ls")
def list_alerts(
    model: str | None = typer.Option(None, "--model", help="Only alerts about this model."),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000, help="How many, newest first."),
) -> None:
    """Recent alerts in the inbox with their decision and why (newest first)."""
    registry = open_registry()
    try:
        alerts = registry.catalog.recent_alerts(model=model, limit=limit)
    finally:
        registry.close()
    if not alerts:
        console.print("No alerts in the inbox.", markup=False)
        return
    rows = [
        {
            "id": a.id,
            "received": a.received_at.strftime("%Y-%m-%d %H:%M:%S"),
            "source": a.source,
            "model": a.model,
            "status": a.status,
            "action": a.action,
            "state": a.state,
            "reason": a.reason or "",
            "flow run": a.flow_run_id or "",
        }
        for a in alerts
    ]
    columns = [
        "id", "received", "source", "model", "status", "action", "state", "reason", "flow run"
    ]  # fmt: skip
    console.print(render_table("alerts", rows, columns))
