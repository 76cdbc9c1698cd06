"""The ``retrain`` console script in process, for tests of commands and of code built on them.

``run_cli("models", "show", "loan-default")`` runs exactly what ``retrain models show
loan-default`` runs (the same entry point, error handling and exit codes), returning
``(exit code, output)``; settings are read afresh for each call, so a test can change
``RETRAIN_*`` variables between calls.
"""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from retrain.cli import main
from retrain.cli.common import settings as cli_settings

__all__ = ["run_cli"]

_console = typer.Typer(add_completion=False)


@_console.command(
    context_settings={
        "ignore_unknown_options": True,
        "allow_extra_args": True,
        "help_option_names": [],  # --help goes to the script, as on the command line
    }
)
def _console_script(ctx: typer.Context) -> None:
    main(ctx.args)


def run_cli(*args: str) -> tuple[int, str]:
    """``retrain ARGS`` in process, as the console script runs it: (exit code, output).
    A crash (anything but the script's own exit) fails loudly instead of passing as a code."""
    cli_settings.cache_clear()
    result = CliRunner().invoke(_console, list(args))
    cli_settings.cache_clear()
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"retrain {' '.join(args)} crashed: {result.exception!r}")
    return result.exit_code, result.output
