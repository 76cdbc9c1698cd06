"""CLI commands that release a candidate: ``retrain release`` (as its pipeline spec says) and
``retrain canary`` (a canary with the options given).

Both check the model server first (``tasks.release.preflight``), show each analysis window as
it is judged, record the outcome on the model card and in the history, and exit 1 unless the
candidate was promoted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from registry.errors import ConfigError, NotFoundError
from retrain.cli.app import app
from retrain.cli.common import open_registry, settings
from retrain.terminal import console, render_table

if TYPE_CHECKING:
    from registry.store import Registry
    from tasks.release.metric_sources import MetricsSource
    from tasks.release.policy import CanaryOutcome, CanaryPolicy, ReleasePolicy

__all__ = ["canary", "release"]

ServerOption = Annotated[str | None, typer.Option(help="Model server URL (default from settings).")]
PrometheusOption = Annotated[
    str | None, typer.Option(help="Prometheus URL: read canary metrics with PromQL instead.")
]


@app.command("release")
def release(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Candidate version that passed its gate.")],
    mode: Annotated[
        str | None,
        typer.Option(help="canary, shadow or gate (default: the pipeline spec's release)."),
    ] = None,
    server: ServerOption = None,
    prometheus: PrometheusOption = None,
) -> None:
    """Release VERSION of NAME (a candidate that passed its gate) the way its spec says."""
    from retrain.config.spec_store import get_registered_spec
    from tasks.pipeline.release_step import check_releasable
    from tasks.release.policy import RELEASE_MODES, CanaryPolicy, ReleasePolicy

    if mode is not None and mode not in RELEASE_MODES:
        raise ConfigError(f"--mode {mode!r}: use one of {', '.join(RELEASE_MODES)}")
    with open_registry() as registry:
        check_releasable(registry.catalog, name, version)
        try:
            spec = get_registered_spec(registry, name)
            policy, canary_policy = spec.release, spec.canary
        except NotFoundError:  # a model trained outside a pipeline: the defaults
            policy, canary_policy = ReleasePolicy(), CanaryPolicy()
        if mode is not None:
            policy = policy.model_copy(update={"mode": mode})
        outcome = _release(registry, name, version, policy, canary_policy, server, prometheus)
    _report(outcome)


@app.command("canary")
def canary(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Candidate version to release.")],
    server: ServerOption = None,
    prometheus: PrometheusOption = None,
    steps: Annotated[str, typer.Option(help="Traffic percentages, comma separated.")] = (
        "10,25,50,100"
    ),
    interval: Annotated[float, typer.Option(help="Seconds per analysis window.")] = 30.0,
    min_requests: Annotated[int, typer.Option(help="Canary requests a window needs.")] = 50,
    shadow: Annotated[bool, typer.Option(help="Mirror traffic; the champion answers.")] = False,
) -> None:
    """Release VERSION of NAME as a canary: step through weights, promote or roll back."""
    from pydantic import ValidationError

    from tasks.release.policy import CanaryPolicy, ReleasePolicy

    try:
        policy = CanaryPolicy(
            steps=[float(s) for s in steps.split(",") if s.strip()],
            interval_s=interval,
            min_requests=min_requests,
            shadow=shadow,
        )
    except (ValidationError, ValueError) as exc:
        raise ConfigError(f"bad canary options: {str(exc).splitlines()[0]}") from exc
    with open_registry() as registry:
        outcome = _release(registry, name, version, ReleasePolicy(), policy, server, prometheus)
    _report(outcome)


def _release(
    registry: Registry,
    name: str,
    version: int,
    policy: ReleasePolicy,
    canary_policy: CanaryPolicy,
    server: str | None,
    prometheus: str | None,
) -> CanaryOutcome:
    """Run the release with a progress bar of its analysis windows."""
    from rich.progress import BarColumn, Progress, TextColumn

    from retrain.config.wiring import build_server_probe
    from tasks.pipeline.release_step import release_candidate
    from tasks.release.policy import StepRecord

    source = _metrics_source(server, prometheus)
    probe = build_server_probe(settings(), server)
    steps = len(policy.canary_policy(canary_policy).steps) if policy.mode != "gate" else 1
    progress = Progress(
        TextColumn("{task.description}", markup=False), BarColumn(),
        TextColumn("{task.fields[last]}", markup=False),
        console=console,
    )  # fmt: skip
    with progress:
        task = progress.add_task(f"{policy.mode} {name} v{version}", total=steps, last="")

        def show(step: StepRecord) -> None:
            verdict = step.analysis.verdict
            last = f"{step.phase} {step.step} at {step.weight:g}%: {verdict}"
            advance = 1 if verdict == "success" and step.phase == "canary" else 0
            progress.update(task, advance=advance, last=last)

        return release_candidate(
            registry, name, version, policy, canary_policy, source,
            server=probe, actor="cli", on_step=show,
        )  # fmt: skip


def _report(outcome: CanaryOutcome) -> None:
    """The windows as a table, then the outcome in one line; exit 1 unless promoted."""
    from tasks.pipeline.release_step import describe_outcome

    if outcome.steps:
        title = f"{outcome.mode} {outcome.model} v{outcome.version}"
        console.print(render_table(title, [s.row() for s in outcome.steps]))
    colour = "green" if outcome.promoted else "red"
    line = Text.assemble((describe_outcome(outcome), colour), f": {outcome.reason}")
    console.print(line, highlight=False, soft_wrap=True)
    if not outcome.promoted:
        raise typer.Exit(1)


def _metrics_source(server: str | None, prometheus: str | None) -> MetricsSource:
    """Where the canary reads its numbers: ``--prometheus``, ``--server``, else the settings
    (RETRAIN_PROMETHEUS_URL, else the model server's own stats)."""
    from retrain.config.wiring import build_metrics_source
    from tasks.release.metric_sources import PrometheusSource, ServerStatsSource

    if prometheus:
        return PrometheusSource(prometheus)
    if server:
        token = settings().serve_token
        return ServerStatsSource(server, token=token.get_secret_value() if token else None)
    return build_metrics_source(settings())
