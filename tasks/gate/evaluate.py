"""The evaluation gate: does a candidate deserve to replace the champion?

Both models predict on the same frozen holdout snapshot. The rules (set per pipeline):

- **floor**: the candidate's metric is no worse than an absolute value;
- **no significant regression**: the lower bound of a seeded paired bootstrap confidence
  interval of ``candidate - champion`` (sign-adjusted, higher is better) must clear
  ``-max_regression``;
- **slices**: on every value of the named categorical features with enough rows the candidate
  loses at most ``slice_max_regression``;
- **latency**: p95 of single-instance CPU predictions stays under a budget.

A first model (no champion yet) is judged on the absolute rules alone: floor and latency.
The decision goes to the event log (``gate.decision``), a rejected candidate's status becomes
``rejected``, and a model card is stored content-hashed and published as a Prefect artifact.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from models.bootstrap import paired_bootstrap
from models.metrics import compute_metrics, metric_spec
from registry.errors import ConfigError
from tasks.artifacts import artifact_key, publish_markdown, publish_table
from tasks.gate.model_card import Check, GateDecision, SliceResult, render_model_card

if TYPE_CHECKING:
    from models.bundle import ModelBundle
    from registry.store import Registry

__all__ = ["Check", "GateDecision", "GateRules", "SliceResult", "evaluate_candidate"]

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
) -> GateDecision:
    """Judge ``model`` v``candidate_version`` on ``holdout`` (a frame or a snapshot digest).

    ``against`` is an alias name, a version number, or None for no comparison.
    """
    from models.bundle import load_bundle

    if isinstance(holdout, str):
        from tasks.data.snapshots import read_snapshot

        holdout_digest, holdout = holdout, read_snapshot(registry, holdout)
    digest = holdout_digest or "unregistered"
    candidate_rec = registry.catalog.get_model_version(model, candidate_version)
    candidate = load_bundle(registry.get_bytes, candidate_rec.bundle_digest)
    champion_version = _champion_version(registry, model, against)
    if champion_version == candidate_version:
        champion_version = None  # a model is not compared with itself
    champion = (
        load_bundle(
            registry.get_bytes,
            registry.catalog.get_model_version(model, champion_version).bundle_digest,
        )
        if champion_version is not None
        else None
    )
    metric = rules.metric_for(candidate.task)
    spec = metric_spec(metric)
    if candidate.target not in holdout.columns:
        raise ConfigError(f"holdout has no target column {candidate.target!r}")
    y = holdout[candidate.target].to_numpy(dtype=np.float64)
    cand_pred = candidate.predict(holdout)
    cand_metrics = compute_metrics(candidate.task, y, cand_pred)
    checks: list[Check] = []
    value = cand_metrics.get(metric, float("nan"))  # compute_metrics leaves out NaN (e.g. AUC)
    if rules.floor is not None:
        ok = value >= rules.floor if spec.higher_is_better else value <= rules.floor
        bound = "at least" if spec.higher_is_better else "at most"
        checks.append(
            Check("floor", bool(ok), f"{metric} {value:.4f} must be {bound} {rules.floor:.4f}")
        )
    champ_metrics: dict[str, float] | None = None
    boot = None
    slices: list[SliceResult] = []
    if champion is not None:
        champ_pred = champion.predict(holdout)
        champ_metrics = compute_metrics(champion.task, y, champ_pred)
        boot = paired_bootstrap(
            metric,
            y,
            cand_pred,
            champ_pred,
            resamples=rules.bootstrap_resamples,
            confidence=rules.confidence,
            seed=rules.seed,
        )
        ok = boot.low > -rules.max_regression
        checks.append(
            Check(
                "vs_champion",
                bool(ok),
                f"{metric} difference {boot.difference:+.4f}, {rules.confidence:.0%} CI "
                f"[{boot.low:+.4f}, {boot.high:+.4f}] must stay above {-rules.max_regression:+.4f}",
            )
        )
        unknown = [f for f in rules.slices if f not in candidate.preprocessor.categorical]
        if unknown:
            raise ConfigError(f"gate.slices: {', '.join(unknown)} not a categorical feature")
        slices = _slice_results(holdout, rules, metric, y, cand_pred, champ_pred)
        bad = [s for s in slices if s.passed is False]
        checks.append(
            Check(
                "slices",
                not bad,
                "no slice regressed"
                if not bad
                else "regressed on "
                + ", ".join(f"{s.feature}={s.value} ({s.difference:+.4f})" for s in bad),
            )
        )
    latency = None
    if rules.latency_p95_ms is not None:
        latency = _latency_p95_ms(candidate, holdout, rules.latency_samples, rules.seed)
        checks.append(
            Check(
                "latency",
                latency <= rules.latency_p95_ms,
                f"p95 {latency:.2f} ms must be within {rules.latency_p95_ms:.2f} ms",
            )
        )
    decision = GateDecision(
        model=model,
        candidate_version=candidate_version,
        champion_version=champion_version,
        candidate_digest=candidate.digest,
        holdout_digest=digest,
        holdout_rows=len(holdout),
        task=candidate.task,
        metric=metric,
        higher_is_better=spec.higher_is_better,
        candidate_metrics=cand_metrics,
        champion_metrics=champ_metrics,
        difference=None if boot is None else boot.difference,
        ci_low=None if boot is None else boot.low,
        ci_high=None if boot is None else boot.high,
        confidence=rules.confidence,
        resamples=rules.bootstrap_resamples,
        slices=tuple(slices),
        latency_p95_ms=latency,
        checks=tuple(checks),
        rules=rules.model_dump(mode="json"),
    )
    if record:
        decision = _record(registry, decision, actor)
    return decision


def _champion_version(registry: Registry, model: str, against: str | int | None) -> int | None:
    if against is None or against == "none":
        return None
    if isinstance(against, int) or str(against).isdigit():
        return int(against)
    return registry.catalog.get_alias(model, str(against))


def _slice_results(
    holdout: pd.DataFrame,
    rules: GateRules,
    metric: str,
    y: np.ndarray,
    cand: np.ndarray,
    champ: np.ndarray,
) -> list[SliceResult]:
    spec = metric_spec(metric)
    out: list[SliceResult] = []
    for feature in rules.slices:
        if feature not in holdout.columns:
            raise ConfigError(f"gate.slices: holdout has no column {feature!r}")
        values = holdout[feature].astype("string").fillna("<missing>").to_numpy()
        for value in sorted(set(values)):
            mask = values == value
            rows = int(mask.sum())
            c, h = spec.fn(y[mask], cand[mask]), spec.fn(y[mask], champ[mask])
            diff = spec.sign * (c - h)
            judged = rows >= rules.slice_min_rows and bool(np.isfinite(diff))
            passed = (diff >= -rules.slice_max_regression) if judged else None
            out.append(SliceResult(feature, str(value), rows, c, h, diff, passed))
    return out


def _latency_p95_ms(bundle: ModelBundle, holdout: pd.DataFrame, samples: int, seed: int) -> float:
    """p95 of one-instance predictions, as the model server makes them (list of dicts)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(holdout), size=samples)
    frame = holdout.iloc[picks][list(bundle.feature_names)]
    instances = json.loads(frame.to_json(orient="records"))  # plain JSON types, like a request
    bundle.predict(instances[:1])  # warm-up: first call pays for lazy initialisation
    timings = np.empty(samples)
    for i, inst in enumerate(instances):
        start = time.perf_counter()
        bundle.predict([inst])
        timings[i] = time.perf_counter() - start
    return float(np.percentile(timings, 95) * 1000.0)


def _record(registry: Registry, decision: GateDecision, actor: str) -> GateDecision:
    """Model card and decision blobs, the event, the status; then the Prefect artifacts."""
    card = render_model_card(decision)
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
    return decision
