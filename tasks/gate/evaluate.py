"""The evaluation gate: does a candidate deserve to replace the champion?

Both models predict on the same frozen holdout snapshot. The rules (set per pipeline):

- **floor**: the candidate's metric is no worse than an absolute value;
- **no significant regression**: the lower bound of a seeded paired bootstrap confidence
  interval of ``candidate - champion`` (sign-adjusted, higher is better) must clear
  ``-max_regression``;
- **slices**: on every value of the named categorical features with enough rows the candidate
  loses at most ``slice_max_regression``;
- **latency**: p95 of single-instance CPU predictions stays under a budget;
- **behaviour**: invariance and direction checks (``tasks.gate.behaviour``).

A first model (no champion yet) is judged on the absolute rules alone: floor and latency.
The decision goes to the event log (``gate.decision``), a rejected candidate's status becomes
``rejected``, and a model card is stored content-hashed and published as a Prefect artifact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from models.metrics import compute_metrics, metric_spec
from registry.errors import ConfigError
from tasks.gate.behaviour import BehaviourRules, behaviour_checks
from tasks.gate.budget_checks import ServingBudget, serving_budget_checks
from tasks.gate.card_explain import publish_attributions
from tasks.gate.checks import ChampionComparison, compare_with_champion, floor_check, latency_check
from tasks.gate.explain import explain_gate
from tasks.gate.model_card import Check, GateDecision, render_model_card
from tasks.reporting.artifacts import artifact_key, publish_markdown, publish_table

if TYPE_CHECKING:
    from models.bundle import ModelBundle
    from registry.store import Registry

__all__ = ["GateRules", "evaluate_candidate"]

MetricName = Literal["roc_auc", "log_loss", "accuracy", "f1", "rmse", "mae"]
_DEFAULT_METRIC = {"binary": "roc_auc", "regression": "rmse"}


class GateRules(BaseModel):
    """What a candidate must show on the holdout to go forward; part of a pipeline spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: MetricName | None = Field(
        default=None, description="Gate metric; default roc_auc (binary) or rmse (regression)."
    )
    floor: float | None = Field(
        default=None,
        description="Worst acceptable metric value: a minimum, or a maximum for loss metrics.",
    )
    max_regression: float = Field(
        default=0.01, ge=0.0, description="Largest tolerated drop against the champion."
    )
    bootstrap_resamples: int = Field(default=1000, ge=1000)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    seed: int = Field(default=0, ge=0)
    slices: list[str] = Field(
        default_factory=list, description="Categorical features whose values must not regress."
    )
    slice_max_regression: float = Field(default=0.05, ge=0.0)
    slice_min_rows: int = Field(default=200, ge=1, description="Smaller slices are reported only.")
    latency_p95_ms: float | None = Field(
        default=50.0, gt=0.0, description="Budget for p95 single-instance CPU latency."
    )
    latency_samples: int = Field(default=200, ge=10, le=10_000)
    max_holdout_rows: int = Field(
        default=500_000,
        ge=1000,
        description="A bigger holdout snapshot is graded on a seeded sample of this many rows.",
    )
    behaviour: BehaviourRules | None = Field(
        default=None,
        description="invariance: [{feature, epsilon}], direction: [{feature, sign, tolerance}].",
        exclude_if=lambda behaviour: behaviour is None,  # no block: the spec's digest as before
    )
    sensitive: list[str] = Field(
        default_factory=list,
        description="Slice features whose values are shown as numbered stand-ins (a spec "
        "fills in privacy.sensitive).",
    )
    explain_rows: int = Field(
        default=5000, ge=0, description="Holdout rows for feature attributions; 0: none."
    )
    explain_repeats: int = Field(default=3, ge=1, le=20)
    importance_shift: float = Field(
        default=3.0, gt=1.0, description="Flag a feature whose importance share moves this much."
    )
    importance_min_share: float = Field(default=0.05, ge=0.0, le=1.0)

    def metric_for(self, task: str) -> str:
        """The gate metric for ``task``; ConfigError if it does not fit the task."""
        name = self.metric or _DEFAULT_METRIC[task]
        if metric_spec(name).task != task:
            raise ConfigError(f"gate.metric {name!r} does not apply to a {task} model")
        return name


def evaluate_candidate(
    registry: Registry,
    model: str,
    candidate_version: int,
    holdout: pd.DataFrame | str,
    rules: GateRules,
    *,
    against: str | int | None = "champion",
    holdout_digest: str | None = None,
    record: bool = True,
    actor: str = "gate",
    budget: ServingBudget | None = None,
) -> GateDecision:
    """Judge ``model`` v``candidate_version`` on ``holdout`` (a frame or a snapshot digest).

    ``against`` is an alias name, a version number, or None for no comparison; ``budget`` is
    the spec's serving budget (``tasks.gate.budget_checks``), None for none.
    """
    sampled_from = None
    if isinstance(holdout, str):
        from tasks.gate.big_holdout import holdout_frame

        holdout_digest = holdout
        holdout, sampled_from = holdout_frame(registry, holdout, rules)
    candidate = _load_version(registry, model, candidate_version)
    champion_version = _champion_version(registry, model, against)
    if champion_version == candidate_version:
        champion_version = None  # a model is not compared with itself
    champion = (
        _load_version(registry, model, champion_version) if champion_version is not None else None
    )
    evidence = _judge(candidate, champion, holdout, rules)
    evidence.checks.extend(
        serving_budget_checks(candidate, holdout, budget, samples=rules.latency_samples,
                              seed=rules.seed, p95_ms=evidence.latency_ms)
    )  # fmt: skip
    attributions = explain_gate(candidate, champion, holdout, rules, evidence.metric)
    boot = evidence.comparison.bootstrap if evidence.comparison is not None else None
    decision = GateDecision(
        model=model,
        candidate_version=candidate_version,
        champion_version=champion_version,
        candidate_digest=candidate.digest,
        holdout_digest=holdout_digest or "unregistered",
        holdout_rows=len(holdout),
        task=candidate.task,
        metric=evidence.metric,
        higher_is_better=metric_spec(evidence.metric).higher_is_better,
        candidate_metrics=evidence.candidate_metrics,
        champion_metrics=evidence.comparison.metrics if evidence.comparison else None,
        difference=None if boot is None else boot.difference,
        ci_low=None if boot is None else boot.low,
        ci_high=None if boot is None else boot.high,
        confidence=rules.confidence,
        resamples=rules.bootstrap_resamples,
        slices=tuple(evidence.comparison.slices) if evidence.comparison else (),
        latency_p95_ms=evidence.latency_ms,
        checks=tuple(evidence.checks),
        rules=rules.model_dump(mode="json"),
        attributions=attributions,
        holdout_sampled_from=sampled_from,
    )
    return _record(registry, decision, actor) if record else decision


@dataclass(frozen=True)
class _Evidence:
    """What the rules found: the candidate's numbers, the comparison, the latency, the checks."""

    metric: str
    candidate_metrics: dict[str, float]
    comparison: ChampionComparison | None
    latency_ms: float | None
    checks: list[Check]


def _judge(
    candidate: ModelBundle,
    champion: ModelBundle | None,
    holdout: pd.DataFrame,
    rules: GateRules,
) -> _Evidence:
    """Apply the rules in order: floor, then (with a champion) bootstrap and slices, then
    latency. A first model has no champion, so only the absolute rules apply to it."""
    metric = rules.metric_for(candidate.task)
    if candidate.target not in holdout.columns:
        raise ConfigError(f"holdout has no target column {candidate.target!r}")
    y = holdout[candidate.target].to_numpy(dtype=np.float64)
    cand_pred = candidate.predict(holdout)
    cand_metrics = compute_metrics(candidate.task, y, cand_pred)
    checks: list[Check] = []
    if rules.floor is not None:
        # compute_metrics leaves out NaN (e.g. AUC on one class); NaN then fails the floor.
        value = cand_metrics.get(metric, float("nan"))
        checks.append(floor_check(metric, value, rules.floor))
    comparison = None
    if champion is not None:
        comparison = compare_with_champion(
            candidate, champion, holdout, rules, metric, y, cand_pred
        )
        checks.extend(comparison.checks)
    latency = None
    if rules.latency_p95_ms is not None:
        latency, check = latency_check(candidate, holdout, rules, rules.latency_p95_ms)
        checks.append(check)
    if rules.behaviour is not None:  # invariance and direction (tasks.gate.behaviour)
        checks.extend(behaviour_checks(candidate, holdout, rules.behaviour, cand_pred))
    return _Evidence(metric, cand_metrics, comparison, latency, checks)


def _load_version(registry: Registry, model: str, version: int) -> ModelBundle:
    from models.bundle import load_bundle

    bundle_digest = registry.catalog.get_model_version(model, version).bundle_digest
    return load_bundle(registry.get_bytes, bundle_digest)


def _champion_version(registry: Registry, model: str, against: str | int | None) -> int | None:
    if against is None or against == "none":
        return None
    if isinstance(against, int) or str(against).isdigit():
        return int(against)
    return registry.catalog.get_alias(model, str(against))


def _record(registry: Registry, decision: GateDecision, actor: str) -> GateDecision:
    """Model card and decision blobs, the event, the status; then the Prefect artifacts."""
    lineage = registry.catalog.get_model_version(decision.model, decision.candidate_version).lineage
    card = render_model_card(decision, lineage)
    card_digest = registry.put_bytes(card.encode(), media_type="text/markdown")
    name = f"{decision.model}-v{decision.candidate_version}"
    meta = {
        "verdict": decision.verdict,
        "model": decision.model,
        "version": decision.candidate_version,
    }
    registry.catalog.register_artifact("model_card", name, card_digest, meta=meta)
    decision = decision.with_card(card_digest)
    payload = decision.to_dict()
    payload_digest = registry.put_bytes(
        json.dumps(payload, sort_keys=True).encode(), media_type="application/json"
    )
    registry.catalog.register_artifact("gate_decision", name, payload_digest, meta=meta)
    versions = [decision.candidate_version]
    if decision.champion_version is not None:
        versions.append(decision.champion_version)
    registry.catalog.append_event(
        "gate.decision",
        model=decision.model,
        versions=versions,
        reason=decision.summary,
        actor=actor,
        payload=payload,
    )
    prefix = "holdout_"
    registry.catalog.update_metrics(
        decision.model,
        decision.candidate_version,
        {prefix + k: v for k, v in decision.candidate_metrics.items()},
    )
    if not decision.passed:
        registry.catalog.set_status(
            decision.model,
            decision.candidate_version,
            "rejected",
            reason=decision.summary,
            actor=actor,
        )
    # One key per model: the Prefect UI then shows each model's gate decisions as a history.
    key = artifact_key("gate", decision.model)
    publish_markdown(key, card, description=decision.summary)
    publish_table(key + "-checks", decision.check_rows(), description="gate checks")
    publish_attributions(
        registry, artifact_key("attributions", decision.model), name, decision.attributions, meta
    )
    return decision
