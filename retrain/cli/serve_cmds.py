"""CLI commands: ``retrain serve``, ``rollback``, ``traffic`` (``canary`` and ``release`` are in
``retrain.cli.release_cmds``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from registry.errors import ServingError
from retrain.cli.app import app
from retrain.cli.common import listen_socket, open_registry, settings
from retrain.terminal import console, render_table

if TYPE_CHECKING:
    from retrain.config.settings import Settings
    from serving.limits import ServeLimits

__all__ = ["rollback", "serve", "serve_limits", "traffic"]


def serve_limits(cfg: Settings) -> ServeLimits:
    """The model server's limits and credentials from the ``serve_*`` settings."""
    from serving.limits import ServeLimits

    return ServeLimits(
        max_body_bytes=cfg.serve_max_body_bytes,
        max_instances=cfg.serve_max_instances,
        request_id_max_chars=cfg.serve_request_id_max_chars,
        feedback_max_predictions=cfg.serve_feedback_max_predictions,
        predict_threads=cfg.serve_predict_threads,
        retired_series_grace_s=cfg.serve_retired_series_grace_s,
        token=cfg.serve_token.get_secret_value() if cfg.serve_token else None,
        auth_predict=cfg.serve_auth_predict,
    )


def _server_url(url: str | None) -> str:
    from retrain.config.wiring import serving_url

    return url or serving_url(settings())


@app.command("serve")
def serve(
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Model to serve (repeat; default all)."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
    poll_interval: Annotated[
        float, typer.Option(help="Seconds between registry polls (alias following).")
    ] = 0.2,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="Inject a fault for demos: MODEL:VERSION:errors=0.05,latency=0.2,shift=0.3,crash"
        ),
    ] = None,
) -> None:
    """Serve the champion (and any canary) of each model, following registry aliases."""
    cfg = settings()
    limits = serve_limits(cfg)  # a ConfigError (one line, exit 1) before anything starts
    bind_host = host or cfg.serve_host
    bind_port = port if port is not None else cfg.serve_port
    from serving.faults import FaultInjector, parse_fault

    injector = FaultInjector()
    for text in fault or []:
        name, version, spec = parse_fault(text)
        injector.set(name, version, spec)
    sock = listen_socket(
        bind_host, bind_port, "--port" if port is not None else "RETRAIN_SERVE_PORT"
    )
    import torch
    import uvicorn

    from serving.app import create_app

    torch.set_num_threads(1)  # one-row predictions: extra threads only add contention
    with sock, open_registry() as registry:
        application = create_app(
            registry, model or None, poll_interval_s=poll_interval, faults=injector, limits=limits
        )
        console.print(
            f"serving {', '.join(model or ['every model'])} on http://{bind_host}:{bind_port}",
            markup=False,
        )
        config = uvicorn.Config(application, log_level="warning", access_log=False)
        uvicorn.Server(config).run(sockets=[sock])  # bound above: a taken port is one line


@app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the event log).")],
    to: Annotated[
        int | None, typer.Option("--to", help="Version to go back to (default: previous champion).")
    ] = None,
    actor: Annotated[str, typer.Option(help="Who is rolling back.")] = "cli",
) -> None:
    """Move NAME's champion back (and drop any canary); servers follow within a second."""
    from tasks.release.rollback import rollback as roll_back

    with open_registry() as registry:
        result = roll_back(registry, name, to, reason=reason, actor=actor)
    row = {
        "model": result.model,
        "from": result.from_version,
        "to": result.to_version,
        "canary dropped": result.canary_dropped,
        "ms": round(result.elapsed_s * 1000, 1),
    }
    console.print(render_table("rollback", [row]))


@app.command("traffic")
def traffic(
    name: Annotated[str, typer.Argument(help="Model name.")],
    url: Annotated[str | None, typer.Option(help="Model server URL (loopback only).")] = None,
    rate: Annotated[float, typer.Option(help="Requests per second.")] = 50.0,
    duration: Annotated[float, typer.Option(help="Seconds to run.")] = 10.0,
    scenario: Annotated[str, typer.Option(help="Simulator scenario.")] = "stable",
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 0,
    label: Annotated[str | None, typer.Option(help="Label column sent as feedback.")] = None,
    feedback_delay: Annotated[float, typer.Option(help="Seconds before labels are sent.")] = 1.0,
) -> None:
    """Replay simulated loan applications against the server, with delayed feedback labels."""
    from retrain.local.traffic import check_server, drive_traffic

    base_url = _server_url(url)
    secret = settings().serve_token
    token = secret.get_secret_value() if secret else None
    check_server(base_url, name, token=token)  # dead URL, unserved model: one line, no load
    with console.status(Text(f"sending {rate:g} req/s to {name} for {duration:g}s ...")):
        report = drive_traffic(
            base_url,
            name,
            rate=rate,
            duration_s=duration,
            scenario=scenario,
            seed=seed,
            label=label,
            feedback_delay_s=feedback_delay,
            keep_records=True,
            token=token,
        )
    p95 = report.latency_quantile(0.95)
    row = {
        "sent": report.sent,
        "ok": report.ok,
        "4xx": report.client_errors,
        "5xx": report.server_errors,
        "failed": report.failed,
        "req/s": round(report.achieved_rps, 1),
        "p95 ms": None if p95 is None else round(p95 * 1000, 2),
        "versions": dict(report.by_version),
        "feedback": report.feedback_sent,
    }
    console.print(render_table(f"traffic to {name}", [row]))
    if report.sent and not report.ok:
        raise ServingError(
            f"none of the {report.sent} requests to {name!r} was answered: see the server's log"
        )
