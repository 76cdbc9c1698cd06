"""``retrain pipelines init DATA --target COL``: a first spec and data contract, from data.

It reads a sample of DATA (any source ``retrain`` reads: a CSV/Parquet file or folder,
``s3://``, ``simulator://``), works out what each column is for and the task from the target
(``tasks.data.profiling``), and writes ``NAME.yaml`` with a starter GX suite beside it,
``NAME.expectations.json``, which the spec names by relative path. Both files are written
whole or not at all; the spec is loaded back and the suite run over the sample before the
command says it is done, so the first retrain of what it writes works with no other file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.text import Text

from registry.errors import ConfigError, RetrainError
from retrain.cli.app import pipelines_app
from retrain.cli.common import settings
from retrain.terminal import console, render_table

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["init"]

_TASKS = ("binary", "regression")


@pipelines_app.command("init")
def init(
    data: str = typer.Argument(
        ..., help="File/folder (Parquet, CSV), s3://bucket/prefix or simulator://loans?..."
    ),
    target: str = typer.Option(..., "--target", help="The column to predict."),
    task: str | None = typer.Option(
        None, "--task", help="binary or regression (default: inferred from the target's values)."
    ),
    name: str | None = typer.Option(
        None, "--name", help="Model name (default: from the output file's name, else DATA's)."
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Spec to write (default: NAME.yaml); its suite goes beside it as "
        "NAME.expectations.json.",
    ),
    sample_rows: int = typer.Option(
        20_000, "--sample-rows", min=50, help="Rows of DATA read to profile it (its first ones)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite the two files if they exist."),
) -> None:
    """Write a pipeline spec and a starter data contract profiled from DATA, to edit and
    register."""
    from retrain.config.spec_init import init_paths, model_name_from, render_spec
    from tasks.data.profiling import profile_frame, starter_suite
    from tasks.data.sampling import load_sample
    from tasks.data.sources import DatasetSource

    if task is not None and task not in _TASKS:
        raise ConfigError(f"--task {task!r}: use binary or regression")
    model = name or model_name_from(output.stem if output else _data_stem(data))
    paths = init_paths(output or Path(f"{model}.yaml"))
    _check_writable([paths.spec, paths.suite], force=force)
    cfg = settings()
    with console.status(Text(f"reading up to {sample_rows} rows of {data} ...")):
        sample = load_sample(data, rows=sample_rows, **cfg.s3_options)
    profile = profile_frame(sample, target, task=task)
    source = data
    if DatasetSource.parse(data).kind == "file":  # runs may start in any folder
        source = str(Path(data).expanduser().resolve())
    suite = starter_suite(profile, model)
    text = render_spec(profile, name=model, source=source, paths=paths)
    _write_both(paths.suite, json.dumps(suite, indent=2) + "\n", paths.spec, text)
    checks = _verify(paths.spec, sample, [paths.spec, paths.suite])
    rows = [
        {"column": c.name, "use": c.role, "why": c.note}
        for c in profile.columns
        if c.role != "target"
    ]
    console.print(render_table(f"{model}: {profile.task_note}", rows))
    console.print(
        f"wrote {paths.spec} and {paths.suite} ({checks} checks; they pass on the "
        f"{len(sample)} rows read)",
        markup=False,
        highlight=False,
    )
    console.print(
        f"next: edit them, then `retrain pipelines register {paths.spec}` and "
        f"`retrain train {model}`",
        markup=False,
        highlight=False,
    )


def _data_stem(data: str) -> str:
    """A name from DATA: a file's or folder's stem, the last part of a URL's path."""
    trimmed = data.split("?", 1)[0].rstrip("/")
    return Path(trimmed.rsplit("/", 1)[-1] or "model").stem


def _check_writable(paths: list[Path], *, force: bool) -> None:
    """Refuse, before any work, files that exist (without ``--force``) or a missing folder."""
    for path in paths:
        if path.is_dir():
            raise ConfigError(f"{path} is a folder; give -o a file name such as my-model.yaml")
        if path.exists() and not force:
            raise ConfigError(f"{path} exists; pass --force to overwrite it, or another -o")
        if not path.parent.is_dir():
            raise ConfigError(f"-o: folder {path.parent} does not exist; create it first")


def _write_both(first: Path, first_text: str, second: Path, second_text: str) -> None:
    """Write two files whole (each through a temporary file renamed into place), or neither."""
    written: list[Path] = []
    try:
        for path, text in ((first, first_text), (second, second_text)):
            partial = path.with_name(f".{path.name}.partial")
            partial.write_text(text, encoding="utf-8")
            partial.replace(path)
            written.append(path)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {exc.filename or first}: {exc.strerror}") from None


def _verify(spec_path: Path, sample: pd.DataFrame, written: list[Path]) -> int:
    """Load the written spec back and run its suite over the sample: the number of checks.
    Should either fail, the files are removed and the reason is the error."""
    from retrain.config.specs import load_spec
    from tasks.data.validation import validate_frame

    try:
        spec = load_spec(spec_path)
        suite = spec.contract_suite
        if suite is None:
            raise ConfigError(f"{spec_path}: its contract could not be read back")
        result = validate_frame(sample, suite.suite, raise_on_failure=False)
        if not result.success:
            raise ConfigError(f"the starter suite fails on its own sample: {result.summary()}")
    except RetrainError:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return len(result.checks)
