"""``retrain alerts rules``: the Prometheus rules of the golden signals, from pipeline specs."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from registry.errors import ConfigError
from retrain.cli.pipeline_cmds import alerts_app
from retrain.terminal import console

__all__ = ["rules"]


@alerts_app.command("rules")
def rules(
    spec: list[Path] = typer.Option(
        None, "--spec", help="Pipeline spec (repeat; default: the shipped specs)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write the rules to this file (default: print them)."
    ),
    check: Path | None = typer.Option(
        None, "--check", help="Exit 1 if FILE differs from the rules the specs give."
    ),
) -> None:
    """Prometheus recording and alerting rules (error ratio, p95 latency, prediction shift,
    online loss, scrape health) with each spec's limits; see infra/prometheus/."""
    from retrain.alerts.prom_rules import render_rules
    from retrain.config.specs import default_spec_paths, load_spec

    if out is not None and check is not None:
        raise ConfigError("use --out FILE to write the rules or --check FILE to compare, not both")
    text = render_rules([load_spec(p) for p in spec or default_spec_paths()])
    if check is not None:
        current = _read(check)
        if current != text:
            what = "is missing" if current is None else "is stale"
            line = Text.assemble(
                (f"{check} {what}", "red"), f": run `retrain alerts rules --out {check}`"
            )
            console.print(line, highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        console.print(f"{check} is up to date", markup=False, highlight=False)
        return
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot be written ({exc.strerror})") from None
    console.print(f"wrote {out}", markup=False, highlight=False)


def _read(path: Path) -> str | None:
    """The file's text; None when there is no such file."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"--check {path}: cannot be read ({reason})") from None
