"""``retrain up`` (the local stack) and ``retrain demo`` (the closed loop on embedded defaults)."""

from __future__ import annotations

import typer
from rich.text import Text

from retrain.cli.app import app
from retrain.cli.common import check_port, settings
from retrain.terminal import console

__all__ = ["demo", "up"]


@app.command()
def up(
    mlflow_ui: bool = typer.Option(False, "--mlflow-ui", help="Also start the MLflow UI."),
    serve_models: bool = typer.Option(True, help="Start the model server."),
) -> None:
    """Start the local stack: Prefect server + UI, deployments, model server, alert receiver."""
    from retrain.local.stack import Stack, stack_services, stop_signals

    cfg = settings()
    for setting in ("serve_port", "alerts_port", "prefect_port", "mlflow_port"):
        check_port(getattr(cfg, setting), f"RETRAIN_{setting.upper()}")
    home = cfg.home.resolve()
    services = stack_services(cfg, serve_models=serve_models, mlflow_ui=mlflow_ui)
    stack = Stack(log_dir=home / "logs")

    def restarted(name: str, code: int, pause: float) -> None:
        exited = Text(f"{name} exited with code {code}", style="yellow")
        console.print(Text.assemble(exited, f"; restarting in {pause:.0f} s"))

    with stop_signals() as stopping:
        try:
            for service in services:
                if stopping():
                    break
                with console.status(f"starting {service.name}…"):
                    stack.start(service, stop=stopping)
                if stopping():
                    break
                if service.name in stack.degraded:
                    why = stack.degraded[service.name]
                    degraded = Text(f"! {service.name:<15} degraded", style="yellow")
                    console.print(Text.assemble(degraded, f": {why}"))
                else:
                    mark = Text("✓", style="green")
                    console.print(Text.assemble(mark, f" {service.name:<15} {service.url}"))
            logs = home / "logs"
            console.print(f"logs in {logs}; press Ctrl-C to stop everything.", markup=False)
            stack.supervise(stopping, on_restart=restarted)
            console.print("stopping…")
        finally:
            stack.stop()
    console.print("stopped.")


@app.command()
def demo(
    fast: bool = typer.Option(False, help="Smaller data and shorter canary steps."),
) -> None:
    """Run the closed loop on embedded defaults and print what happened."""
    from retrain.local.demo import run_demo

    run_demo(settings(), fast=fast)
