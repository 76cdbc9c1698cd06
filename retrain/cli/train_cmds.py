"""CLI commands ``retrain train`` and ``retrain evaluate``: fit a candidate, then gate it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from registry.errors import ConfigError
from retrain.cli.app import app
from retrain.cli.common import console, open_registry, render_table, settings

if TYPE_CHECKING:
    from models.config import ModelConfig, TrainingConfig
    from tasks.gate import GateDecision, GateRules

__all__ = ["evaluate", "train"]


@dataclass(frozen=True)
class _Plan:
    """What ``retrain train`` needs, from a pipeline spec or a small training config."""

    name: str
    source: str | None
    target: str
    task: str
    numeric: list[str]
    categorical: list[str]
    model: ModelConfig
    training: TrainingConfig
    gate: GateRules
    holdout_fraction: float
    spec_digest: str | None


@app.command()
def train(
    spec: Path = typer.Argument(..., help="Pipeline spec YAML, or a training config YAML/TOML."),
    data: str | None = typer.Argument(
        None, help="File, folder, s3://... or simulator://loans?...; default: the spec's source."
    ),
    epochs: int | None = typer.Option(None, help="Override training.max_epochs."),
) -> None:
    """Train a candidate: snapshot the data, hold out a frozen share, fit, register."""
    from retrain.wiring import build_tracker
    from tasks.data_sources import load_frame
    from tasks.holdout import split_holdout
    from tasks.snapshots import take_snapshot
    from tasks.training import train_model

    _quiet_lightning()
    plan = _load_plan(spec)
    source = data or plan.source
    if source is None:
        raise ConfigError("no DATA given and the config names no dataset source")
    cfg = settings()
    frame = load_frame(source, **cfg.s3_options)
    training = (
        plan.training if epochs is None else plan.training.model_copy(update={"max_epochs": epochs})
    )
    registry = open_registry()
    try:
        train_frame, holdout = split_holdout(frame, plan.holdout_fraction, seed=training.seed)
        train_snap = take_snapshot(registry, f"{plan.name}-train", train_frame)
        hold_snap = take_snapshot(registry, f"{plan.name}-holdout", holdout)
        result = train_model(
            registry,
            train_frame,
            model=plan.name,
            target=plan.target,
            task=plan.task,
            numeric=plan.numeric,
            categorical=plan.categorical,
            model_config=plan.model,
            training=training,
            dataset_digest=train_snap.digest,
            lineage={"spec_digest": plan.spec_digest, "holdout_digest": hold_snap.digest},
            run_info={"gate_rules": plan.gate.model_dump(mode="json"), "trigger": "cli"},
            tracker=build_tracker(cfg),
            checkpoint_root=cfg.home / "checkpoints",
            progress_bar=True,
            actor="cli",
        )
    finally:
        registry.close()
    rows: list[dict[str, Any]] = [
        {"field": "model", "value": f"{result.model} v{result.version} (candidate)"},
        {"field": "bundle", "value": result.bundle_digest},
        {"field": "training snapshot", "value": f"{train_snap.digest} ({train_snap.rows} rows)"},
        {"field": "holdout snapshot", "value": f"{hold_snap.digest} ({hold_snap.rows} rows)"},
        {"field": "epochs", "value": f"{result.epochs} (best {result.best_epoch + 1})"},
        {"field": "time", "value": f"{result.duration_s:.1f} s"},
        {"field": "mlflow run", "value": result.mlflow_run_id or "not tracked"},
        *({"field": k, "value": f"{v:.4f}"} for k, v in sorted(result.metrics.items())),
    ]
    console.print(render_table("trained", rows))
    console.print(f"next: retrain evaluate {result.model}:{result.version}")


@app.command()
def evaluate(
    candidate: str = typer.Argument(..., help="MODEL:VERSION (or MODEL for its newest version)."),
    against: str = typer.Option("champion", help="Alias or version to compare with; 'none'."),
    holdout: str | None = typer.Option(
        None, help="Holdout data (file, s3://, simulator://); default: the one frozen at training."
    ),
    spec: Path | None = typer.Option(None, help="Take the gate rules from this spec/config."),
) -> None:
    """Gate a candidate against the champion on the frozen holdout; exit 1 if it fails."""
    from tasks.data_sources import load_frame
    from tasks.gate import GateRules, evaluate_candidate

    model, version_text = candidate.partition(":")[::2]
    registry = open_registry()
    try:
        if version_text:
            if not version_text.isdigit():
                raise ConfigError(f"candidate {candidate!r}: the version must be a number")
            version = int(version_text)
        else:
            versions = registry.catalog.list_model_versions(model)
            if not versions:
                raise ConfigError(f"model {model!r} has no versions; run `retrain train` first")
            version = max(v.version for v in versions)
        lineage = registry.catalog.get_model_version(model, version).lineage
        if spec is not None:
            rules = _load_plan(spec).gate
        else:
            rules = GateRules.model_validate(lineage.get("gate_rules") or {})
        data: Any = lineage.get("holdout_digest")
        digest = data
        if holdout is not None:
            cfg = settings()
            data = load_frame(holdout, **cfg.s3_options)
            digest = None
        if data is None:
            raise ConfigError(f"{model} v{version} has no frozen holdout; pass --holdout DATA")
        with console.status(f"evaluating {model} v{version} against {against}"):
            decision = evaluate_candidate(
                registry,
                model,
                version,
                data,
                rules,
                against=against,
                holdout_digest=digest,
                actor="cli",
            )
    finally:
        registry.close()
    _print_decision(decision)
    if not decision.passed:
        raise typer.Exit(1)


def _print_decision(decision: GateDecision) -> None:
    console.print(
        render_table(f"gate: {decision.model} v{decision.candidate_version}", decision.check_rows())
    )
    console.print(render_table("holdout metrics", decision.metric_rows()))
    if decision.slices:
        rows = [
            {
                "slice": f"{s.feature}={s.value}",
                "rows": s.rows,
                "candidate": s.candidate,
                "champion": s.champion,
                "difference": s.difference,
                "ok": s.passed,
            }
            for s in decision.slices
        ]
        console.print(render_table("slices", rows))
    colour = "green" if decision.passed else "red"
    console.print(
        f"[bold {colour}]{decision.verdict.upper()}[/] {decision.summary}", highlight=False
    )
    if decision.card_digest:
        console.print(f"model card: {decision.card_digest}")


def _load_plan(path: Path) -> _Plan:
    """A PipelineSpec when the file is one; else a training config (target/task/features...)."""
    data = _read(path)
    if "dataset" in data:  # only a pipeline spec has a dataset section
        from retrain.specs import load_spec

        spec = load_spec(path)
        return _Plan(
            spec.name,
            spec.dataset.source,
            spec.target,
            spec.task,
            spec.features.numeric,
            spec.features.categorical,
            spec.model,
            spec.training,
            spec.gate,
            spec.dataset.holdout_fraction,
            spec.digest,
        )
    return _plan_from_config(path, data)


def _read(path: Path) -> dict[str, Any]:
    import tomllib

    import yaml

    try:
        raw = path.read_text(encoding="utf-8")
        data = tomllib.loads(raw) if path.suffix == ".toml" else yaml.safe_load(raw)
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot be read ({exc.strerror})") from exc
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"config {path.name}: not valid YAML/TOML: {exc}".splitlines()[0]
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path.name}: expected a mapping of fields at the top")
    return data


def _plan_from_config(path: Path, data: dict[str, Any]) -> _Plan:
    import hashlib
    import json

    from pydantic import ValidationError

    from models.config import ModelConfig, TrainingConfig
    from tasks.gate import GateRules

    known = {
        "name",
        "source",
        "target",
        "task",
        "features",
        "model",
        "training",
        "gate",
        "holdout_fraction",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"config {path.name}: unknown field(s) {', '.join(unknown)}")
    try:
        features = data["features"]
        task = str(data["task"])
        if task not in ("binary", "regression"):
            raise ConfigError(f"config {path.name}: task must be binary or regression")
        digest = (
            "sha256:"
            + hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
        )
        return _Plan(
            str(data.get("name", path.stem)),
            data.get("source"),
            str(data["target"]),
            task,
            list(features.get("numeric", [])),
            list(features.get("categorical", [])),
            ModelConfig.model_validate(data.get("model", {})),
            TrainingConfig.model_validate(data.get("training", {})),
            GateRules.model_validate(data.get("gate", {})),
            float(data.get("holdout_fraction", 0.2)),
            digest,
        )
    except KeyError as exc:
        raise ConfigError(f"config {path.name}: required field {exc.args[0]!r} is missing") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"config {path.name}: {where}: {first['msg']}") from exc


def _quiet_lightning() -> None:
    """Lightning's banner lines (GPU available..., tips) add nothing to a progress bar."""
    import warnings

    import lightning  # noqa: F401  (it sets its loggers' levels on import; override after)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*treespec.*LeafSpec.*")
