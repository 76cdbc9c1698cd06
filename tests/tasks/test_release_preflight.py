"""Before the first canary step the release asks the model server whether it can take the
candidate. When it cannot (nobody answers, another model, another registry, a bundle it cannot
load), nothing is waited for: the release ends "not released" at once with one line saying
what to do, and the candidate stays a candidate, as ``retrain models history`` and the model
card then say.

Real registries, real servers on loopback ports; the canary's windows are scripted (none is
ever read here unless the test says so).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from registry.store import Registry
from retrain.config.settings import Settings
from retrain.config.wiring import build_registry, build_server_probe
from retrain.testing import ManualClock, ScriptedMetricsSource
from retrain.testing_serving import register_test_bundle
from serving.runner import RunningServer
from tasks.pipeline.release_step import release_candidate
from tasks.release.metric_sources import MetricsSource, PrometheusSource, ServerStatsSource
from tasks.release.policy import CanaryOutcome, CanaryPolicy, ReleasePolicy
from tasks.release.preflight import ServerProbe

MODEL = "loans"
POLICY = CanaryPolicy(steps=[50, 100], interval_s=30, min_requests=10, watch_windows=0)
Start = Callable[..., RunningServer]


def _release(
    registry: Registry, version: int, url: str, metrics: MetricsSource | None = None
) -> tuple[CanaryOutcome, ScriptedMetricsSource, ManualClock]:
    """Release ``version`` as the flow does (canary mode), checking the server at ``url``."""
    clock = ManualClock()
    scripted = ScriptedMetricsSource([], clock=clock.monotonic, model=MODEL)
    outcome = release_candidate(
        registry, MODEL, version, ReleasePolicy(), POLICY, metrics or scripted,
        server=ServerProbe(url), sleep=clock.sleep, clock=clock.monotonic,
    )  # fmt: skip
    return outcome, scripted, clock


def _assert_not_released(
    registry: Registry, version: int, outcome: CanaryOutcome, clock: ManualClock
) -> None:
    """Nothing moved and nothing was waited for; the candidate is still a candidate."""
    assert outcome.status == "not_released", outcome.reason
    assert outcome.steps == [] and clock.sleeps == []
    assert registry.catalog.get_model_version(MODEL, version).status == "candidate"
    assert registry.catalog.aliases(MODEL) == {"champion": 1}
    assert not registry.catalog.events(MODEL, kinds=["canary.weight", "canary.aborted"])


def _what_the_user_reads(
    retrain_cli: Callable[..., tuple[int, str]],
    model_card: Callable[..., str],
    version: int,
    reason: str,
) -> None:
    code, history = retrain_cli("models", "history", MODEL)
    assert code == 0, history
    assert f"v{version} not released: {reason}" in history
    card = model_card(version)
    assert "**Verdict: PASS** against champion v1" in card  # the gate's verdict stays
    assert f"\n**Release: NOT RELEASED**: {reason}\n" in card and f"- why: {reason}" in card


def test_with_no_server_answering_the_candidate_is_not_released(
    registry: Registry,
    gated: int,
    dead_url: str,
    retrain_cli: Callable[..., tuple[int, str]],
    model_card: Callable[..., str],
) -> None:
    outcome, source, clock = _release(registry, gated, dead_url)
    reason = (
        f"no model server answers at {dead_url} (connection refused): start one with "
        f"`retrain serve` or `retrain up`, then `retrain release {MODEL} {gated}`"
    )
    assert outcome.reason == reason
    assert source.calls == 0
    _assert_not_released(registry, gated, outcome, clock)
    _what_the_user_reads(retrain_cli, model_card, gated, reason)


def test_the_prometheus_source_is_not_asked_when_no_model_server_answers(
    registry: Registry, gated: int, dead_url: str, tmp_path: Path
) -> None:
    host, port = dead_url.removeprefix("http://").split(":")
    settings = Settings(home=tmp_path / "home", serve_host=host, serve_port=int(port))
    probe = build_server_probe(settings)
    assert probe.url == dead_url  # the server of the settings, though metrics come elsewhere
    prometheus = PrometheusSource(dead_url.replace(port, "9"))  # never asked
    outcome, _, clock = _release(registry, gated, probe.url, prometheus)
    assert outcome.reason.startswith(f"no model server answers at {dead_url}")
    _assert_not_released(registry, gated, outcome, clock)


def test_a_server_that_serves_another_model_is_refused_at_once(
    registry: Registry,
    gated: int,
    model_server: Start,
    retrain_cli: Callable[..., tuple[int, str]],
    model_card: Callable[..., str],
) -> None:
    server = model_server(registry, ["fraud"])
    outcome, source, clock = _release(registry, gated, server.url)
    reason = (
        f"the model server at {server.url} does not serve {MODEL} (it serves: fraud): serve "
        f"it from this registry (`retrain serve --model {MODEL}`), then "
        f"`retrain release {MODEL} {gated}`"
    )
    assert outcome.reason == reason and source.calls == 0
    _assert_not_released(registry, gated, outcome, clock)
    _what_the_user_reads(retrain_cli, model_card, gated, reason)


@pytest.mark.parametrize("their_champion", ["same-number-other-bundle", "another-number"])
def test_a_server_following_another_registry_is_refused_at_once(
    registry: Registry, gated: int, model_server: Start, tmp_path: Path, their_champion: str
) -> None:
    elsewhere = build_registry(Settings(home=tmp_path / "elsewhere"))
    try:
        register_test_bundle(elsewhere, MODEL, seed=5, champion=True)  # v1, other weights
        if their_champion == "another-number":
            register_test_bundle(elsewhere, MODEL, seed=6, champion=True)  # v2
        server = model_server(elsewhere)
        outcome, source, clock = _release(registry, gated, server.url)
    finally:
        elsewhere.close()
    theirs = "v1 (sha256:" if their_champion == "same-number-other-bundle" else "v2 (sha256:"
    assert outcome.reason.startswith(
        f"the model server at {server.url} follows another registry: its champion of "
        f"{MODEL} is {theirs}"
    ), outcome.reason
    assert "this registry's is v1 (sha256:" in outcome.reason
    assert outcome.reason.endswith(
        "point both at one registry (the same RETRAIN_HOME or RETRAIN_DATABASE_URL), then "
        f"`retrain release {MODEL} {gated}`"
    )
    assert source.calls == 0
    _assert_not_released(registry, gated, outcome, clock)


def test_a_server_that_wants_a_token_says_so(
    registry: Registry, gated: int, model_server: Start
) -> None:
    server = model_server(registry, token="s3cret-token")
    outcome, _, clock = _release(registry, gated, server.url)
    assert outcome.reason == (
        f"the model server at {server.url} refused the release's credentials (HTTP 401): set "
        f"RETRAIN_SERVE_TOKEN to the server's token, then `retrain release {MODEL} {gated}`"
    )
    _assert_not_released(registry, gated, outcome, clock)


@pytest.mark.realtime
def test_a_version_the_server_cannot_load_is_not_released_before_any_window(
    registry: Registry, model_server: Start
) -> None:
    """The server tries a version once the canary alias names it: its load error stops the
    release at the first step's settle, before any window; the next try stops at the check."""
    register_test_bundle(registry, MODEL, seed=0, champion=True)
    broken = registry.put_bytes(b"not a model bundle")
    version = registry.catalog.register_model_version(
        MODEL, broken, metrics={}, lineage={}, reason="test: unloadable bundle"
    ).version
    server = model_server(registry)
    policy = POLICY.model_copy(update={"settle_timeout_s": 10.0})
    stats = ServerStatsSource(server.url)
    started = time.monotonic()
    outcome = release_candidate(
        registry, MODEL, version, ReleasePolicy(), policy, stats, server=ServerProbe(server.url)
    )
    waited = time.monotonic() - started
    assert outcome.status == "not_released", outcome.reason
    assert outcome.reason.startswith(f"the model server cannot load {MODEL} v{version}: ")
    assert outcome.steps == [] and waited < policy.settle_timeout_s  # no window, no timeout
    assert registry.catalog.get_model_version(MODEL, version).status == "candidate"
    assert registry.catalog.aliases(MODEL) == {"champion": 1}
    again = release_candidate(
        registry, MODEL, version, ReleasePolicy(), policy, stats, server=ServerProbe(server.url)
    )
    assert again.status == "not_released"
    assert again.reason.startswith(f"the model server at {server.url} cannot load {MODEL} v2: ")
    kinds = [e.kind for e in registry.catalog.events(MODEL)]
    assert "canary.step" not in kinds and kinds.count("release.outcome") == 2
