"""The steps of a retrain as plain functions over a ``PipelinePlan``, defined once.

``tasks.pipeline.recipe`` composes them into the retrain; the flow runs the same composition
with each step as a Prefect task, ``retrain train``/``retrain evaluate`` call them directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from registry.champions import frozen_holdout
from registry.errors import ConfigError
from registry.release import CHAMPION_ALIAS
from tasks.data.contracts import stored_suite
from tasks.data.drift import DriftPolicy, detect_drift, record_drift
from tasks.data.drift_result import DriftResult
from tasks.data.holdout import split_holdout
from tasks.data.snapshots import Snapshot, read_snapshot, take_snapshot
from tasks.data.streaming import LargeTable
from tasks.data.validation import load_suite, validate_and_record
from tasks.data.validation_result import ValidationResult
from tasks.gate.evaluate import evaluate_candidate
from tasks.training.fit import train_model

if TYPE_CHECKING:
    from registry.records import ModelVersionRecord
    from registry.store import Registry
    from tasks.gate.model_card import GateDecision
    from tasks.pipeline.plan import PipelinePlan
    from tasks.training.fit import TrainResult
    from tasks.training.plan import TrainingRun

__all__ = [
    "PreparedData",
    "check_contract",
    "contract_suite",
    "gate_candidate",
    "grading_holdout",
    "measure_drift",
    "prepare_data",
    "train_candidate",
    "trained_before",
]


@dataclass(frozen=True)
class PreparedData:
    """A batch as the pipeline stores it: all rows, the training rows, the fresh holdout."""

    batch: Snapshot
    training: Snapshot
    holdout: Snapshot


def prepare_data(
    registry: Registry, plan: PipelinePlan, frame: pd.DataFrame | LargeTable
) -> PreparedData:
    """Snapshot the batch, split off its latest rows as holdout, snapshot both parts."""
    if isinstance(frame, LargeTable):  # larger than the memory budget: streamed
        from tasks.pipeline.large_steps import prepare_large

        return PreparedData(*prepare_large(registry, plan, frame))
    model = plan.model
    training, holdout = split_holdout(frame, plan.holdout_fraction, seed=plan.training.fitting.seed)
    return PreparedData(
        batch=take_snapshot(registry, model, frame),
        training=take_snapshot(registry, f"{model}-training", training),
        holdout=take_snapshot(registry, f"{model}-holdout", holdout),
    )


def check_contract(
    registry: Registry, plan: PipelinePlan, frame: pd.DataFrame | LargeTable, prepared: PreparedData
) -> ValidationResult | None:
    """Run the plan's data contract over the batch (None when the plan names none).

    The suite is the one stored under the plan's ``contract_digest`` (what was registered);
    a plan read from a spec file that is not registered yet brings its suite with it.
    """
    suite = contract_suite(registry, plan)
    if suite is None:
        return None
    if isinstance(frame, LargeTable):  # batch by batch over the stored snapshot
        from tasks.pipeline.large_steps import check_large

        return check_large(registry, plan, suite, frame, prepared.batch.digest)
    return validate_and_record(
        registry,
        frame,
        suite,
        name=plan.model,
        dataset_digest=prepared.batch.digest,
        contract_digest=plan.contract_digest,
        sensitive=plan.privacy.sensitive,
    )


def contract_suite(registry: Registry, plan: PipelinePlan) -> Mapping[str, Any] | None:
    """The suite the plan's batches are validated with, or None without a contract: the one
    stored under its digest, else (a spec file not registered yet) the one it was read with."""
    if plan.contract is None:
        return None
    digest = plan.contract_digest
    if digest is not None and (
        plan.contract_suite is None or registry.catalog.get_blob(digest) is not None
    ):
        return stored_suite(registry, digest, model=plan.model)
    if plan.contract_suite is not None:
        return plan.contract_suite
    return load_suite(plan.contract)  # a plan built in code: a suite name or file


def train_candidate(
    registry: Registry, plan: PipelinePlan, prepared: PreparedData, run: TrainingRun
) -> TrainResult:
    """Fit the plan on the training snapshot and register the result as a candidate."""
    run = replace(run, run_info={**run.run_info, "gate_rules": plan.gate.model_dump(mode="json")})
    run = replace(run, limits=plan.budget.training_limits() or run.limits)
    return train_model(
        registry,
        prepared.training.digest,
        plan.training,
        run,
        lineage={
            "spec_digest": plan.spec_digest,
            "holdout_digest": prepared.holdout.digest,
            "contract_digest": plan.contract_digest,
        },
    )


def trained_before(
    registry: Registry, plan: PipelinePlan, prepared: PreparedData
) -> ModelVersionRecord | None:
    """The newest version of the plan's model trained on the same data, spec and code, if any.

    Training is deterministic, so it would only register the same bundle again: ``retrain
    train`` reuses this version instead (the flow skips such a run earlier, by its run key).
    """
    from tasks.training.prepare import run_identity  # loads torch: training follows anyway

    wanted = {
        "inputs_digest": run_identity(plan.training, prepared.training.digest).inputs_digest,
        "spec_digest": plan.spec_digest,
        "holdout_digest": prepared.holdout.digest,
    }
    for record in reversed(registry.catalog.list_model_versions(plan.model)):
        if all(record.lineage.get(key) == value for key, value in wanted.items()):
            return record
    return None


def grading_holdout(registry: Registry, model: str, fresh_holdout: str | None) -> str | None:
    """The holdout a candidate of ``model`` is graded on: the champion's (``frozen_holdout``).

    Only a first model, with no champion to compare with, is graded on its own batch's
    ``fresh_holdout``, and then by the gate's absolute rules alone. With a champion, a batch
    never grades the model trained on it: a poisoned batch would vouch for its own model.
    Raises ``ConfigError`` when the champion has no holdout on record.
    """
    champion = registry.catalog.get_alias(model, CHAMPION_ALIAS)
    if champion is None:
        return fresh_holdout
    held = frozen_holdout(registry.catalog, model)
    if held is None:
        raise ConfigError(
            f"{model}: champion v{champion} has no recorded holdout (it was not trained by a "
            "pipeline), and a candidate is never graded on its own batch; grade it with "
            "`retrain evaluate --holdout DATA`"
        )
    return held


def gate_candidate(
    registry: Registry,
    plan: PipelinePlan,
    version: int,
    holdout_digest: str,
    *,
    against: str | int | None = "champion",
    actor: str = "gate",
) -> GateDecision:
    """Judge ``version`` against ``against`` on the holdout with the plan's gate rules."""
    return evaluate_candidate(
        registry, plan.model, version, holdout_digest, plan.gate, against=against, actor=actor,
        budget=plan.budget.serving(),
    )  # fmt: skip


def measure_drift(
    registry: Registry,
    reference: pd.DataFrame | str,
    current: pd.DataFrame | str | LargeTable,
    policy: DriftPolicy,
    *,
    name: str,
) -> DriftResult:
    """Drift of ``current`` against ``reference`` (frames or snapshot digests; a large
    ``current`` is sampled as it streams); the HTML report is stored as a ``drift_report``
    artifact named ``name`` and published."""

    def frame(data: pd.DataFrame | str) -> pd.DataFrame:
        return read_snapshot(registry, data) if isinstance(data, str) else data

    if isinstance(current, LargeTable) and isinstance(reference, str):
        from tasks.pipeline.large_steps import drift_large

        result = drift_large(registry, reference, current, policy)
    else:
        assert not isinstance(current, LargeTable), "a large table is compared with a digest"
        result = detect_drift(frame(reference), frame(current), policy)
    digests = {
        f"{role}_digest": data
        for role, data in (("reference", reference), ("current", current))
        if isinstance(data, str)
    }
    record_drift(registry, result, name=name, meta=digests)
    return result
