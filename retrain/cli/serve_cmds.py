"""CLI commands: ``retrain serve``, ``rollback``, ``canary`` (release a candidate), ``traffic``."""

from __future__ import annotations

from typing import Annotated

import typer

from registry.errors import ConfigError
from retrain.cli.app import app
from retrain.cli.common import console, open_registry, render_table, settings

__all__ = ["canary", "rollback", "serve", "traffic"]


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
    import torch
    import uvicorn

    from serving.app import create_app
    from serving.faults import FaultInjector, parse_fault

    torch.set_num_threads(1)  # one-row predictions: extra threads only add contention
    injector = FaultInjector()
    for text in fault or []:
        name, version, spec = parse_fault(text)
        injector.set(name, version, spec)
    cfg = settings()
    bind_host, bind_port = host or cfg.serve_host, port or cfg.serve_port
    with open_registry() as registry:
        application = create_app(
            registry, model or None, poll_interval_s=poll_interval, faults=injector
        )
        console.print(
            f"serving {', '.join(model or ['every model'])} on http://{bind_host}:{bind_port}"
        )
        uvicorn.run(
            application, host=bind_host, port=bind_port, log_level="warning", access_log=False
        )


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


@app.command("canary")
def canary(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Candidate version to release.")],
    server: Annotated[
        str | None, typer.Option(help="Model server URL for stats (default from settings).")
    ] = None,
    prometheus: Annotated[
        str | None, typer.Option(help="Prometheus URL: read metrics with PromQL instead.")
    ] = None,
    steps: Annotated[str, typer.Option(help="Traffic percentages, comma separated.")] = (
        "10,25,50,100"
    ),
    interval: Annotated[float, typer.Option(help="Seconds per analysis window.")] = 30.0,
    min_requests: Annotated[int, typer.Option(help="Canary requests a window needs.")] = 50,
    shadow: Annotated[bool, typer.Option(help="Mirror traffic; the champion answers.")] = False,
) -> None:
    """Release VERSION of NAME as a canary: step through weights, promote or roll back."""
    from pydantic import ValidationError
    from rich.progress import BarColumn, Progress, TextColumn

    from retrain.config.wiring import build_metrics_source
    from tasks.release.canary import run_canary
    from tasks.release.metric_sources import MetricsSource, PrometheusSource, ServerStatsSource
    from tasks.release.policy import CanaryPolicy, StepRecord

    try:
        policy = CanaryPolicy(
            steps=[float(s) for s in steps.split(",") if s.strip()],
            interval_s=interval,
            min_requests=min_requests,
            shadow=shadow,
        )
    except (ValidationError, ValueError) as exc:
        raise ConfigError(f"bad canary options: {str(exc).splitlines()[0]}") from exc
    source: MetricsSource
    if prometheus:
        source = PrometheusSource(prometheus)
    elif server:
        source = ServerStatsSource(server)
    else:  # the settings decide: RETRAIN_PROMETHEUS_URL, else the model server's own stats
        source = build_metrics_source(settings())
    progress = Progress(
        TextColumn("canary {task.description}"), BarColumn(), TextColumn("{task.fields[last]}"),
        console=console,
    )  # fmt: skip
    with open_registry() as registry, progress:
        task = progress.add_task(f"{name} v{version}", total=len(policy.steps), last="")

        def show(step: StepRecord) -> None:
            verdict = step.analysis.verdict
            last = f"{step.phase} {step.step} at {step.weight:g}%: {verdict}"
            advance = 1 if verdict == "success" and step.phase == "canary" else 0
            progress.update(task, advance=advance, last=last)

        outcome = run_canary(registry, name, version, policy, source, actor="cli", on_step=show)
    console.print(render_table(f"canary {name} v{version}", [s.row() for s in outcome.steps]))
    colour = "green" if outcome.promoted else "red"
    console.print(f"[{colour}]{outcome.status}[/]: {outcome.reason}", highlight=False)
    if not outcome.promoted:
        raise typer.Exit(1)


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
    from retrain.local.traffic import drive_traffic

    with console.status(f"sending {rate:g} req/s to {name} for {duration:g}s ..."):
        report = drive_traffic(
            _server_url(url),
            name,
            rate=rate,
            duration_s=duration,
            scenario=scenario,
            seed=seed,
            label=label,
            feedback_delay_s=feedback_delay,
            keep_records=True,
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
