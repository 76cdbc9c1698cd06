"""The Typer application and its command groups; command modules attach to these."""

from __future__ import annotations

import typer

__all__ = ["app", "models_app", "pipelines_app", "registry_app"]

app = typer.Typer(
    name="retrain",
    help="Keep production models fresh: validate, detect drift, train, gate, canary, roll back.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
registry_app = typer.Typer(
    help="The content-addressed store and its catalog.", no_args_is_help=True
)
models_app = typer.Typer(help="Model versions, aliases and their history.", no_args_is_help=True)
pipelines_app = typer.Typer(help="Pipeline specs: how models are registered.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")
app.add_typer(models_app, name="models")
app.add_typer(pipelines_app, name="pipelines")
