"""``retrain up`` (the local stack) and ``retrain demo`` (the closed loop on embedded defaults)."""

from __future__ import annotations

import typer

from retrain.cli.app import app
from retrain.cli.common import console, settings

__all__ = ["demo", "up"]


@app.command()
def up(
    mlflow_ui: bool = typer.Option(False, "--mlflow-ui", help="Also start the MLflow UI."),
    serve_models: bool = typer.Option(True, help="Start the model server."),
) -> None:
    """Start the local stack: Prefect server + UI, deployments, model server, alert receiver."""
    from retrain.config.wiring import serving_url
    from retrain.local.stack import Service, Stack, module_argv

    cfg = settings()
    home = cfg.home.resolve()
    prefect_url = f"http://127.0.0.1:{cfg.prefect_port}"
    prefect_env = {
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_API_URL": f"{prefect_url}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_URL": prefect_url,
    }
    services = [
        Service(
            "prefect-server",
            module_argv(
                "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(cfg.prefect_port)
            ),
            url=prefect_url,
            ready_url=f"{prefect_url}/api/health",
            env=prefect_env,
        ),
        Service(
            "deployments", module_argv("retrain", "pipelines", "serve"), url="", env=prefect_env
        ),
        Service(
            "alert-receiver",
            module_argv("retrain", "alerts", "serve"),
            url=f"http://{cfg.alerts_host}:{cfg.alerts_port}/alerts/generic",
            ready_url=f"http://{cfg.alerts_host}:{cfg.alerts_port}/healthz",
            env=prefect_env,
        ),
    ]
    if serve_models:
        base = serving_url(cfg)
        services.append(
            Service(
                "model-server",
                module_argv("retrain", "serve"),
                url=f"{base}/v1/models",
                ready_url=f"{base}/healthz",
                env=prefect_env,
            )
        )
    if mlflow_ui:
        mlflow_url = f"http://127.0.0.1:{cfg.mlflow_port}"
        services.append(
            Service(
                "mlflow-ui",
                module_argv(
                    "mlflow",
                    "ui",
                    "--backend-store-uri",
                    cfg.tracking_uri,
                    "--port",
                    str(cfg.mlflow_port),
                ),
                url=mlflow_url,
                ready_url=mlflow_url,
            )
        )
    stack = Stack(log_dir=home / "logs")
    try:
        for service in services:
            with console.status(f"starting {service.name}…"):
                stack.start(service)
            console.print(f"[green]✓[/] {service.name:<15} {service.url}")
        console.print(f"logs in {home / 'logs'}; press Ctrl-C to stop everything.")
        exited = stack.wait()
        if exited:
            console.print(f"[red]{exited} exited[/]; stopping the stack.")
    except KeyboardInterrupt:
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
