"""CLI commands for the data gates: ``validate``, ``drift``, ``simulate`` and ``snapshot``.

DATA, REFERENCE and CURRENT accept a Parquet/CSV file or folder, ``s3://bucket/prefix``,
``simulator://loans?scenario=stable&rows=50000&seed=1`` or the ``sha256:`` digest of a
snapshot in the registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from registry.errors import ConfigError
from retrain.cli.app import app
from retrain.cli.common import open_registry, settings
from retrain.terminal import console, render_table

if TYPE_CHECKING:
    import pandas as pd

    from tasks.data.drift import DriftPolicy

__all__: list[str] = []

_SOURCE_HELP = "File/folder (Parquet, CSV), s3://bucket/prefix, simulator://loans?... or sha256:..."


def _load(source: str) -> pd.DataFrame:
    """Read a source; heavy imports happen here so ``retrain --help`` stays fast."""
    from tasks.data.snapshots import read_snapshot
    from tasks.data.sources import load_frame

    with console.status(Text(f"reading {source} ...")):
        if source.startswith("sha256:"):
            with open_registry() as registry:
                return read_snapshot(registry, source)
        cfg = settings()
        return load_frame(source, **cfg.s3_options)


@app.command("validate")
def validate(
    contract: Annotated[
        str,
        typer.Argument(
            help="A suite file (.json) or a suite name, looked up as NAME.json in "
            "expectations_path, then among the shipped suites."
        ),
    ],
    data: Annotated[str, typer.Argument(help=_SOURCE_HELP)],
    show_all: Annotated[bool, typer.Option("--all", help="List passing checks too.")] = False,
    record: Annotated[
        str | None, typer.Option(help="Also store the result in the registry under this name.")
    ] = None,
) -> None:
    """Check DATA against CONTRACT's expectations; exit 1 if any fails."""
    from tasks.data.validation import load_suite, record_validation, validate_frame

    suite = load_suite(contract, folders=settings().suite_folders)
    frame = _load(data)
    with console.status(Text(f"validating {len(frame)} rows against {contract} ...")):
        result = validate_frame(frame, suite, raise_on_failure=False)
    rows = result.table_rows() if show_all else [r for r in result.table_rows() if not r["ok"]]
    if rows:
        console.print(render_table(f"contract {result.contract}", rows))
    if record:
        with open_registry() as registry:
            artifact = record_validation(registry, result, name=record)
        console.print(
            f"stored as validation artifact {artifact.name} ({artifact.digest})", markup=False
        )
    console.print(result.summary(), highlight=False, soft_wrap=True, markup=False)
    if not result.success:
        raise typer.Exit(1)


@app.command("drift")
def drift(
    reference: Annotated[str, typer.Argument(help=f"Reference data. {_SOURCE_HELP}")],
    current: Annotated[str, typer.Argument(help="Current data, same forms as REFERENCE.")],
    report: Annotated[Path, typer.Option(help="Where to save the HTML report.")] = Path(
        "drift-report.html"
    ),
    share: Annotated[float, typer.Option(help="Drifted share of features that means drift.")] = 0.3,
    sample_rows: Annotated[int, typer.Option(help="Rows sampled per side (0: all rows).")] = 50_000,
    seed: Annotated[int, typer.Option(help="Seed of the row sample.")] = 0,
    target: Annotated[
        str | None, typer.Option(help="Target column: reported separately, not a feature.")
    ] = None,
    pipeline: Annotated[
        str | None,
        typer.Option(
            help="A spec file or registered pipeline: its features, their types and its target "
            "are what is compared (the default when a registered pipeline's target is in the "
            "data)."
        ),
    ] = None,
    fail_on_drift: Annotated[bool, typer.Option(help="Exit 1 when drift is detected.")] = False,
    record: Annotated[
        str | None, typer.Option(help="Also store the report in the registry under this name.")
    ] = None,
) -> None:
    """Compare CURRENT with REFERENCE per column (Evidently); print a table, save the report."""
    from pydantic import ValidationError

    from tasks.data.drift import DriftPolicy, detect_drift, record_drift

    try:
        policy = DriftPolicy(
            drift_share=share, sample_rows=sample_rows or None, seed=seed, target=target
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"--{first['loc'][0]}: {first['msg']}".replace("_", "-")) from exc
    _check_output(report, "--report")
    ref, cur = _load(reference), _load(current)
    policy = _spec_policy(policy, pipeline, [str(c) for c in ref.columns], explicit=target)
    with console.status(f"measuring drift ({len(ref)} vs {len(cur)} rows) ..."):
        result = detect_drift(ref, cur, policy)
    console.print(render_table("drift per column", result.table_rows()))
    _write(report, "--report", result.html.encode("utf-8"))
    console.print(f"report saved to {report}", highlight=False, markup=False)
    if record:
        with open_registry() as registry:
            artifact = record_drift(registry, result, name=record)
        console.print(
            f"stored as drift_report artifact {artifact.name} ({artifact.digest})", markup=False
        )
    console.print(result.summary(), highlight=False, soft_wrap=True, markup=False)
    if fail_on_drift and result.drifted:
        raise typer.Exit(1)


def _spec_policy(
    policy: DriftPolicy, pipeline: str | None, columns: list[str], *, explicit: str | None
) -> DriftPolicy:
    """``policy`` with the spec's features, categorical types and target: the spec named by
    ``--pipeline``, else (without ``--target``) the one registered pipeline whose target and
    features the data carries; the command says which it used."""
    from retrain.config.spec_store import (
        get_registered_spec,
        list_registered_pipelines,
        spec_from_file_or_registry,
    )

    spec = None
    if pipeline is not None:
        with open_registry() as registry:
            spec = spec_from_file_or_registry(registry, pipeline, folders=settings().suite_folders)
    elif explicit is None:
        with open_registry() as registry:
            fits = [
                get_registered_spec(registry, p.name) for p in list_registered_pipelines(registry)
            ]
        fits = [s for s in fits if {s.target, *s.features.all} <= set(columns)]
        if len(fits) == 1:
            spec = fits[0]
    if spec is None:
        return policy
    console.print(
        f"comparing {spec.name}'s features (target {spec.target!r} reported separately)",
        highlight=False,
        markup=False,
    )
    missing = [c for c in (*spec.features.all, spec.target) if c not in columns]
    if missing:
        raise ConfigError(f"--pipeline {spec.name}: the data lacks {', '.join(missing)}")
    return policy.model_copy(
        update={
            "target": explicit or spec.target,
            "columns": spec.features.all,
            "categorical": list(spec.features.categorical),
        }
    )


@app.command("simulate")
def simulate_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet or CSV file to write.")],
    scenario: Annotated[str, typer.Option(help="stable, covariate_shift, ...")] = "stable",
    rows: Annotated[int, typer.Option(help="Number of rows.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same rows.")] = 0,
    severity: Annotated[float, typer.Option(help="How far the scenario departs.")] = 1.0,
) -> None:
    """Write simulated loan applications (the ``loans`` contract) to a file."""
    from tasks.data.simulator import SCENARIOS, simulate
    from tasks.data.snapshots import to_parquet_bytes

    if scenario not in SCENARIOS:
        raise ConfigError(f"--scenario {scenario!r} unknown: use one of {', '.join(SCENARIOS)}")
    if rows < 0 or severity < 0:
        raise ConfigError("--rows and --severity must not be negative")
    suffix = output.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ConfigError(f"-o {output}: write .parquet or .csv")
    _check_output(output, "-o")
    with console.status(f"simulating {rows} rows of {scenario} ..."):
        frame = simulate(rows, scenario=scenario, seed=seed, severity=severity)
        if suffix == ".csv":
            data = frame.to_csv(index=False).encode("utf-8")
        else:
            data = to_parquet_bytes(frame)
        _write(output, "-o", data)
    console.print(
        f"wrote {len(frame)} rows of {scenario} to {output}", highlight=False, markup=False
    )


@app.command("snapshot")
def snapshot(
    name: Annotated[str, typer.Argument(help="Dataset name in the registry.")],
    data: Annotated[str, typer.Argument(help=_SOURCE_HELP)],
) -> None:
    """Store DATA as a deterministic Parquet snapshot; print its digest."""
    from tasks.data.snapshots import take_snapshot

    frame = _load(data)
    with open_registry() as registry, console.status(f"storing {len(frame)} rows ..."):
        snap = take_snapshot(registry, name, frame)
    console.print(
        f"{snap.name} {snap.digest} rows={snap.rows}", highlight=False, soft_wrap=True, markup=False
    )


def _check_output(path: Path, option: str) -> None:
    """Refuse, before any work, a file to write whose folder is missing or that is a folder."""
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give a file name")
    if not path.parent.is_dir():
        raise ConfigError(f"{option} {path}: folder {path.parent} does not exist; create it first")


def _write(path: Path, option: str, data: bytes) -> None:
    """Write ``data`` to ``path``; a failure (permissions, a full disk) is one line."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot write ({exc.strerror})") from None
