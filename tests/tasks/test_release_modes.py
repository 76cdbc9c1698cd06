"""A spec chooses how a candidate that passed its gate is released: ``canary`` (default, live
traffic in steps), ``shadow`` (it scores mirrored traffic for N windows; the champion answers)
or ``gate`` (promoted at once, no model server). Whatever the mode, the final outcome shows in
the run's summary, its log, ``retrain models history`` and the model card.

Canary windows are scripted on a manual clock; the model server the release checks first is
real (on a loopback port) or, on purpose, absent.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from registry.store import Registry
from retrain.config.specs import DEFAULT_SPECS_DIR, parse_spec
from retrain.testing import (
    ManualClock,
    NullTracker,
    Reading,
    ScriptedMetricsSource,
    ScriptEntry,
    window_counters,
)
from serving.runner import RunningServer
from tasks.pipeline.plan import PipelinePlan
from tasks.pipeline.recipe import RetrainEnv, RetrainRequest, run_retrain
from tasks.pipeline.release_step import release_candidate
from tasks.release.policy import CanaryOutcome, CanaryPolicy, ReleasePolicy
from tasks.release.preflight import ServerProbe
from tasks.training.plan import TrainingRun

MODEL = "loans"
CHAMPION, CANDIDATE = 1, 2
POLICY = CanaryPolicy(steps=[50, 100], interval_s=30, min_requests=10, watch_windows=0)
HEALTHY = {CHAMPION: window_counters(100), CANDIDATE: window_counters(100)}
LOAN_SPEC = (DEFAULT_SPECS_DIR / "loan-default.yaml").read_text()
SOURCE = "simulator://loans?scenario=stable&rows=1500&seed=1"
Cli = Callable[..., tuple[int, str]]


def _release(
    registry: Registry, mode: ReleasePolicy, script: list[ScriptEntry], server: str
) -> tuple[CanaryOutcome, ScriptedMetricsSource, ManualClock]:
    clock = ManualClock()
    source = ScriptedMetricsSource(script, clock=clock.monotonic, model=MODEL)
    outcome = release_candidate(
        registry, MODEL, CANDIDATE, mode, POLICY, source,
        server=ServerProbe(server), sleep=clock.sleep, clock=clock.monotonic,
    )  # fmt: skip
    return outcome, source, clock


@pytest.mark.parametrize(
    ("written", "mode", "windows"),
    [
        ("", "canary", 4),
        ("release: shadow\n", "shadow", 4),
        ("release: gate\n", "gate", 4),
        ("release:\n  mode: shadow\n  shadow_windows: 6\n", "shadow", 6),
    ],
)
def test_a_spec_names_its_release_mode_short_or_nested(
    written: str, mode: str, windows: int
) -> None:
    spec = parse_spec(LOAN_SPEC + written)
    assert (spec.release.mode, spec.release.shadow_windows) == (mode, windows)
    assert spec.plan.release == spec.release


def test_an_unknown_release_mode_is_one_line_from_register(
    tmp_path: Path, retrain_cli: Cli
) -> None:
    path = tmp_path / "loan-default.yaml"
    path.write_text(LOAN_SPEC + "release: blue-green\n")
    code, output = retrain_cli("pipelines", "register", str(path))
    assert code == 2
    assert output.strip() == (
        "error: spec loan-default.yaml: release: unknown release mode 'blue-green': use canary "
        "(live traffic in steps), shadow (mirrored traffic) or gate (promote when the gate "
        "passes)"
    )


def test_shadow_promotes_after_n_passing_windows_on_mirrored_traffic(
    registry: Registry,
    gated: int,
    model_server: Callable[..., RunningServer],
    retrain_cli: Cli,
    model_card: Callable[..., str],
) -> None:
    server = model_server(registry)
    script: list[ScriptEntry] = [Reading(), Reading(), HEALTHY, HEALTHY, HEALTHY]
    shadow = ReleasePolicy(mode="shadow", shadow_windows=3)
    outcome, source, clock = _release(registry, shadow, script, server.url)
    reason = "shadow passed 3 windows on mirrored traffic"
    assert (outcome.status, outcome.mode, outcome.reason) == ("promoted", "shadow", reason)
    assert [(s.weight, s.analysis.verdict) for s in outcome.steps] == [(100.0, "success")] * 3
    assert source.remaining == 0 and clock.sleeps == [POLICY.interval_s] * 3
    # The server was told to mirror all traffic to the candidate, then nothing.
    weights = [
        (e.payload["weight"], e.payload["shadow"])
        for e in registry.catalog.events(MODEL, kinds=["canary.weight"])
    ]
    assert weights == [(100.0, True), (0.0, False)]
    assert registry.catalog.get_alias(MODEL, "champion") == gated
    code, history = retrain_cli("models", "history", MODEL)
    assert code == 0 and f"v{gated} promoted via shadow: {reason}" in history
    assert f"**Release: PROMOTED VIA SHADOW**: {reason}" in model_card(gated)


SHIFTED = {CHAMPION: window_counters(100), CANDIDATE: window_counters(100, prediction=0.7)}
WORSE_ONLINE = {
    CHAMPION: window_counters(100, labels=60, label_value=0.3),
    CANDIDATE: window_counters(100, labels=60, label_value=1.0),
}


@pytest.mark.parametrize(
    ("window", "check"),
    [(SHIFTED, "prediction_shift"), (WORSE_ONLINE, "online_loss_delta")],
    ids=["prediction-shift", "online-metric"],
)
def test_shadow_rejects_a_candidate_whose_shift_or_online_metric_fails(
    registry: Registry,
    gated: int,
    model_server: Callable[..., RunningServer],
    retrain_cli: Cli,
    window: ScriptEntry,
    check: str,
) -> None:
    server = model_server(registry)
    script: list[ScriptEntry] = [Reading(), Reading(), HEALTHY, window]
    shadow = ReleasePolicy(mode="shadow", shadow_windows=3)
    outcome, source, _ = _release(registry, shadow, script, server.url)
    assert outcome.status == "aborted" and outcome.reason.startswith(check), outcome.reason
    assert source.remaining == 0  # stopped at the failing window
    assert registry.catalog.get_alias(MODEL, "champion") == CHAMPION
    assert registry.catalog.get_model_version(MODEL, gated).status == "rejected"
    code, history = retrain_cli("models", "history", MODEL)
    assert code == 0 and f"v{gated} aborted (shadow): {check}=" in history


def test_gate_mode_promotes_with_no_model_server(
    registry: Registry, gated: int, dead_url: str, retrain_cli: Cli, model_card: Callable[..., str]
) -> None:
    outcome, source, clock = _release(registry, ReleasePolicy(mode="gate"), [], dead_url)
    reason = "the gate passed and the release mode is gate (no canary)"
    assert (outcome.status, outcome.mode, outcome.reason) == ("promoted", "gate", reason)
    assert source.calls == 0 and clock.sleeps == [] and outcome.steps == []
    catalog = registry.catalog
    assert catalog.aliases(MODEL) == {"champion": gated}
    assert catalog.get_model_version(MODEL, gated).status == "champion"
    assert catalog.get_model_version(MODEL, CHAMPION).status == "retired"
    assert not catalog.events(MODEL, kinds=["canary.weight"])
    code, history = retrain_cli("models", "history", MODEL)
    assert code == 0 and f"v{gated} promoted via gate: {reason}" in history
    card = model_card(gated)
    assert "**Verdict: PASS** against champion v1" in card
    assert f"**Release: PROMOTED VIA GATE**: {reason}" in card
    assert "- champion before: v1; after: v2" in card


def test_release_refuses_a_version_that_never_passed_a_gate(
    registry: Registry, gated: int, retrain_cli: Cli
) -> None:
    from retrain.testing_serving import register_test_bundle

    ungraded = register_test_bundle(registry, MODEL, seed=3)
    code, output = retrain_cli("release", MODEL, str(ungraded))
    assert code == 2
    assert output.strip() == (
        f"error: {MODEL} v{ungraded} has no gate decision: grade it with "
        f"`retrain evaluate {MODEL}:{ungraded}` first"
    )
    code, output = retrain_cli("release", MODEL, str(gated), "--mode", "bluegreen")
    assert (
        code == 2 and output.strip() == "error: --mode 'bluegreen': use one of canary, shadow, gate"
    )
    assert registry.catalog.get_alias(MODEL, "champion") == CHAMPION


def _small_plan() -> PipelinePlan:
    """The shipped loan pipeline on 1,500 simulated rows, a tiny net, two epochs, no data
    contract; equal candidates pass its gate."""
    spec = yaml.safe_load(LOAN_SPEC)
    spec["dataset"]["source"] = SOURCE
    spec["model"] = {"hidden_sizes": [16]}
    spec["training"].update(max_epochs=2, batch_size=256)
    spec["gate"].update(floor=0.3, latency_p95_ms=None, max_regression=0.5)
    spec["gate"].pop("behaviour", None)  # two epochs do not learn every direction
    return dataclasses.replace(parse_spec(yaml.safe_dump(spec)).plan, contract=None)


def test_a_retrain_carries_its_outcome_and_logs_its_decisions(
    registry: Registry,
    dead_url: str,
    tmp_path: Path,
    retrain_cli: Cli,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plan, name = _small_plan(), "loan-default"
    env = RetrainEnv(
        metrics=ScriptedMetricsSource([]),
        run=TrainingRun(tracker=NullTracker(), checkpoint_root=tmp_path / "checkpoints"),
        server=ServerProbe(dead_url),
    )
    request = RetrainRequest(SOURCE, trigger="manual")
    caplog.set_level(logging.INFO, logger="tasks.pipeline.recipe")
    first = run_retrain(registry, plan, request, env)
    assert (first.outcome, first.release_mode, first.champion) == ("promoted", "canary", 1)
    forced = run_retrain(registry, plan, dataclasses.replace(request, force=True), env)
    assert (forced.outcome, forced.release, forced.candidate_version) == (
        "not_released", "not_released", 2,
    )  # fmt: skip
    assert forced.release_reason.startswith(f"no model server answers at {dead_url}")
    assert registry.catalog.get_model_version(name, 2).status == "candidate"
    assert run_retrain(registry, plan, request, env).outcome == "reused"
    logged = [r.getMessage() for r in caplog.records]
    gate_line = next(line for line in logged if line.startswith(f"gate PASS for {name} v2: "))
    assert "roc_auc candidate " in gate_line and ", champion v1 " in gate_line
    assert ", floor 0.3000, difference +0.0000, 95% CI [" in gate_line
    after_gate = [line for line in logged[logged.index(gate_line) + 1 :] if "cost of" not in line]
    assert (
        f"release of {name} v2: not released: no model server answers at {dead_url}"
        in after_gate[0]
    )
    # The candidate waits; a batch-scoring team releases it without a server.
    code, output = retrain_cli("release", name, "2", "--mode", "gate")
    assert code == 0, output
    assert "promoted via gate: the gate passed and the release mode is gate" in output
    assert registry.catalog.get_alias(name, "champion") == 2
    code, history = retrain_cli("models", "history", name)
    assert "v1 promoted via canary: first model: no champion to compare with" in history
    assert "v2 promoted via gate: the gate passed and the release mode is gate" in history
