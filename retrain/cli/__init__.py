"""The ``retrain`` command line: one clear line and a non-zero exit for any user error."""

from __future__ import annotations

import sys

from registry.errors import RetrainError
from retrain.cli import (  # noqa: F401  (each module attaches its commands to the app)
    data_cmds,
    pipeline_cmds,
    registry_cmds,
    serve_cmds,
    stack_cmds,
    train_cmds,
)
from retrain.cli.app import app
from retrain.cli.common import err_console

__all__ = ["main"]


def main() -> None:
    """Entry point of the ``retrain`` console script."""
    try:
        app()
    except RetrainError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
