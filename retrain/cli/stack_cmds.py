"""``retrain up`` (the local stack), ``retrain serve-blobs`` (its document server) and
``retrain demo`` (the closed loop on embedded defaults)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.text import Text

from retrain.cli.app import app
from retrain.cli.common import check_port, listen_socket, open_registry, settings
from retrain.terminal import console

if TYPE_CHECKING:
    from retrain.config.settings import Settings
    from retrain.local.stack import Service, Stack
    from retrain.local.stack_state import StackState

__all__ = ["demo", "serve_blobs", "up"]

_PORTS = ("serve_port", "alerts_port", "prefect_port", "mlflow_port", "blobs_port")


@app.command()
def up(
    mlflow_ui: bool = typer.Option(False, "--mlflow-ui", help="Also start the MLflow UI."),
    serve_models: bool = typer.Option(True, help="Start the model server."),
) -> None:
    """Start the local stack: Prefect server + UI, deployments, model server, alert receiver,
    blob server; `<home>/stack.json` tells other commands where they are while it runs."""
    from retrain.local.stack import Stack, stack_services, stop_signals
    from retrain.local.stack_state import published

    cfg = settings()
    for setting in _PORTS:
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
                _report(stack, service)
            if not stopping():
                with published(home, _state(cfg, stack, services)):
                    logs = home / "logs"
                    console.print(f"logs in {logs}; press Ctrl-C to stop everything.", markup=False)
                    stack.supervise(stopping, on_restart=restarted)
            console.print("stopping…")
        finally:
            stack.stop()
    console.print("stopped.")


def _report(stack: Stack, service: Service) -> None:
    """One line per service: its URL, or why it is degraded."""
    if service.name in stack.degraded:
        degraded = Text(f"! {service.name:<15} degraded", style="yellow")
        console.print(Text.assemble(degraded, f": {stack.degraded[service.name]}"))
    else:
        mark = Text("✓", style="green")
        console.print(Text.assemble(mark, f" {service.name:<15} {service.url}"))


def _state(cfg: Settings, stack: Stack, services: list[Service]) -> StackState:
    """The card other commands read: this process and the URL of each running service."""
    import os

    from retrain.config.wiring import serving_url
    from retrain.local.stack_state import StackState

    up = {s.name: s.url for s in services if s.name not in stack.degraded}

    def base(name: str, url: str) -> str | None:
        return url if name in up else None

    return StackState(
        pid=os.getpid(),
        home=str(cfg.home.resolve()),
        prefect_api_url=f"{up['prefect-server']}/api",
        prefect_ui_url=up["prefect-server"],
        model_server_url=base("model-server", serving_url(cfg)),
        alert_receiver_url=base("alert-receiver", f"http://{cfg.alerts_host}:{cfg.alerts_port}"),
        blob_server_url=base("blob-server", f"http://{cfg.blobs_host}:{cfg.blobs_port}"),
        mlflow_url=up.get("mlflow-ui"),
    )


@app.command("serve-blobs")
def serve_blobs() -> None:
    """Serve registry documents (reports, model cards, JSON) read-only over HTTP on
    RETRAIN_BLOBS_HOST:RETRAIN_BLOBS_PORT until Ctrl-C; `retrain up` starts it."""
    import uvicorn

    from retrain.local.blob_http import create_blob_app

    cfg = settings()
    sock = listen_socket(cfg.blobs_host, cfg.blobs_port, "RETRAIN_BLOBS_PORT")
    with sock, open_registry() as registry:
        console.print(
            f"registry documents on http://{cfg.blobs_host}:{cfg.blobs_port}/blobs/sha256/<hex>",
            markup=False,
        )
        config = uvicorn.Config(create_blob_app(registry), log_level="warning", access_log=False)
        uvicorn.Server(config).run(sockets=[sock])


@app.command()
def demo(
    fast: bool = typer.Option(False, help="Smaller data and shorter canary steps."),
) -> None:
    """Run the closed loop on embedded defaults and print what happened."""
    from retrain.local.demo import run_demo

    run_demo(settings(), fast=fast)
