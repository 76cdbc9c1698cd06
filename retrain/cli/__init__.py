"""The ``retrain`` command line: one clear line and a non-zero exit for any user error."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

from rich.text import Text

from registry.errors import RetrainError
from retrain.cli import (  # noqa: F401  (each module attaches its commands to the app)
    alert_rules_cmds,
    data_cmds,
    deploy_cmds,
    history_cmds,
    init_cmds,
    lifecycle_cmds,
    listing_cmds,
    pipeline_cmds,
    registry_cmds,
    release_cmds,
    serve_cmds,
    show_cmds,
    stack_cmds,
    train_cmds,
)
from retrain.cli.app import app
from retrain.terminal import err_console

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``retrain`` console script (``argv``: the arguments, default
    ``sys.argv[1:]``)."""
    try:
        app(args=None if argv is None else list(argv))
    except RetrainError as exc:
        _fail(str(exc))
    except OSError as exc:  # a file or socket the command could not use, named by the OS
        where = f": {exc.filename}" if exc.filename else ""
        _fail(f"{exc.strerror or exc}{where}")
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


def _fail(message: str) -> NoReturn:
    """Print ``message`` as one ``error:`` line (literal text, never rich markup); exit 2."""
    text = " ".join(part.strip() for part in message.splitlines() if part.strip())
    line = Text.assemble(("error:", "bold red"), " ", text)  # text, never rich markup
    err_console.print(line, highlight=False, soft_wrap=True)
    sys.exit(2)
