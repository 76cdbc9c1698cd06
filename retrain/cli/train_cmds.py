"""CLI commands ``retrain train`` and ``retrain evaluate``: fit a candidate, then gate it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import typer

from registry.errors import ConfigError
from retrain.cli.app import app
from retrain.cli.common import open_registry, settings
from retrain.terminal import console, render_table

if TYPE_CHECKING:
    from registry.records import ModelVersionRecord
    from registry.store import Registry
    from retrain.config.specs import PipelineSpec
    from tasks.gate.evaluate import GateRules
    from tasks.gate.model_card import GateDecision
    from tasks.pipeline.steps import PreparedData
    from tasks.training.fit import TrainResult

__all__ = ["evaluate", "train"]


@app.command()
def train(
    spec: str = typer.Argument(
        ..., help="Pipeline spec YAML, or the name of a registered pipeline."
    ),
    data: str | None = typer.Argument(
        None, help="File, folder, s3://... or simulator://loans?...; default: the spec's source."
    ),
    epochs: int | None = typer.Option(None, help="Override training.max_epochs."),
) -> None:
    """Train a candidate as the retrain flow does: snapshot, split, validate, fit, register.

    An earlier version trained on the same data, spec and code is reused, not trained and
    registered again (training is deterministic: it would be the same bundle).
    """
    from retrain.config.spec_privacy import pii_key_of
    from retrain.config.wiring import build_tracker
    from tasks.data.privacy import apply_pii
    from tasks.data.sources import load_frame
    from tasks.pipeline.steps import check_contract, prepare_data, train_candidate, trained_before
    from tasks.training.plan import TrainingRun

    _quiet_lightning()
    cfg = settings()
    registry = open_registry()
    try:
        loaded = _load_spec(registry, spec)
        if epochs is not None and epochs < 1:
            raise ConfigError(f"--epochs must be at least 1; got {epochs}")
        plan = loaded.plan.with_epochs(epochs)
        frame = apply_pii(  # personal columns go before the first snapshot
            load_frame(data or loaded.dataset.source, **cfg.s3_options),
            plan.privacy,
            pii_key_of(cfg),
        )
        prepared = prepare_data(registry, plan, frame)
        if check_contract(registry, plan, frame, prepared) is None:
            console.print("the spec names no data contract: the batch is not validated")
        earlier = trained_before(registry, plan, prepared)
        if earlier is not None:
            title, rows = "reused", _version_rows(earlier, prepared)
            model, version = earlier.model, earlier.version
        else:
            run = TrainingRun(
                tracker=build_tracker(cfg),
                checkpoint_root=cfg.home / "checkpoints",
                run_info={"trigger": "cli"},
                progress_bar=True,
                actor="cli",
                memory_budget_mb=cfg.memory_budget_mb,
            )
            result = train_candidate(registry, plan, prepared, run)
            title, rows = "trained", _trained_rows(result, prepared)
            model, version = result.model, result.version
    finally:
        registry.close()
    console.print(render_table(title, rows))
    if earlier is not None:
        console.print(f"same data, spec and code as v{version}: reused")
    console.print(f"next: retrain evaluate {model}:{version}")


def _snapshot_rows(prepared: PreparedData) -> list[dict[str, Any]]:
    training, holdout = prepared.training, prepared.holdout
    return [
        {"field": "training snapshot", "value": f"{training.digest} ({training.rows} rows)"},
        {"field": "holdout snapshot", "value": f"{holdout.digest} ({holdout.rows} rows)"},
    ]


def _trained_rows(result: TrainResult, prepared: PreparedData) -> list[dict[str, Any]]:
    return [
        {"field": "model", "value": f"{result.model} v{result.version} (candidate)"},
        {"field": "bundle", "value": result.bundle_digest},
        *_snapshot_rows(prepared),
        {"field": "epochs", "value": f"{result.epochs} (best {result.best_epoch + 1})"},
        {"field": "time", "value": f"{result.duration_s:.1f} s"},
        {"field": "mlflow run", "value": result.mlflow_run_id or "not tracked"},
        *({"field": k, "value": f"{v:.4f}"} for k, v in sorted(result.metrics.items())),
    ]


def _version_rows(record: ModelVersionRecord, prepared: PreparedData) -> list[dict[str, Any]]:
    return [
        {"field": "model", "value": f"{record.model} v{record.version} ({record.status})"},
        {"field": "bundle", "value": record.bundle_digest},
        *_snapshot_rows(prepared),
        *({"field": k, "value": f"{v:.4f}"} for k, v in sorted(record.metrics.items())),
    ]


@app.command()
def evaluate(
    candidate: str = typer.Argument(..., help="MODEL:VERSION (or MODEL for its newest version)."),
    against: str = typer.Option("champion", help="Alias or version to compare with; 'none'."),
    holdout: str | None = typer.Option(
        None,
        help="Holdout data (file, s3://, simulator://); default: the champion's holdout.",
    ),
    spec: str | None = typer.Option(
        None, help="Take the gate rules from this spec (default: the registered pipeline's)."
    ),
) -> None:
    """Gate a candidate against the champion on the champion's holdout; exit 1 if it fails."""
    from tasks.data.sources import load_frame
    from tasks.gate.evaluate import evaluate_candidate
    from tasks.pipeline.steps import grading_holdout

    model, version_text = candidate.partition(":")[::2]
    registry = open_registry()
    try:
        version = _resolve_version(registry, model, version_text, candidate)
        lineage = registry.catalog.get_model_version(model, version).lineage
        rules = _gate_rules(registry, model, spec, lineage)
        data: Any
        if holdout is not None:
            data, digest = load_frame(holdout, **settings().s3_options), None
        else:  # the champion's holdout, as the flow grades; its own only for a first model
            data = digest = grading_holdout(registry, model, lineage.get("holdout_digest"))
        if data is None:
            raise ConfigError(f"{model} v{version} has no recorded holdout; pass --holdout DATA")
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


def _resolve_version(registry: Registry, model: str, version_text: str, given: str) -> int:
    if version_text:
        if not version_text.isdigit():
            raise ConfigError(f"candidate {given!r}: the version must be a number")
        return int(version_text)
    versions = registry.catalog.list_model_versions(model)
    if not versions:
        raise ConfigError(f"model {model!r} has no versions; run `retrain train` first")
    return int(max(v.version for v in versions))


def _load_spec(registry: Registry, given: str) -> PipelineSpec:
    """The spec in file ``given``, else the registered pipeline named ``given``."""
    from retrain.config.spec_store import spec_from_file_or_registry

    return spec_from_file_or_registry(registry, given, folders=settings().suite_folders)


def _gate_rules(
    registry: Registry, model: str, spec: str | None, lineage: dict[str, Any]
) -> GateRules:
    """Gate rules from ``--spec``, else those recorded when the candidate was trained."""
    from tasks.gate.evaluate import GateRules

    if spec is not None:
        return _load_spec(registry, spec).gate
    rules: GateRules = GateRules.model_validate(lineage.get("gate_rules") or {})
    return rules


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
    if decision.attributions is not None:
        console.print(render_table("feature attributions", decision.attributions.brief_rows()))
        for note in decision.attributions.notes:
            console.print(note, style="yellow", markup=False, highlight=False)
    colour = "green" if decision.passed else "red"
    console.print(
        f"[bold {colour}]{decision.verdict.upper()}[/] {decision.summary}", highlight=False
    )
    if decision.card_digest:
        console.print(f"model card: {decision.card_digest}")


def _quiet_lightning() -> None:
    """Lightning's banner lines (GPU available..., tips) add nothing to a progress bar."""
    import warnings

    import lightning  # noqa: F401  (it sets its loggers' levels on import; override after)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*treespec.*LeafSpec.*")
