"""No half-released state: locks, interrupted and crashed releases, first release, rollback.

Releases run on a ``ManualClock`` against a ``ScriptedMetricsSource``: a kill is a scripted
``KeyboardInterrupt``, a down server scripted ``MetricsUnavailableError``s, a crash an expired
lease on the manual clock. Nothing sleeps.
"""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from registry.errors import ConfigError, MetricsUnavailableError, ReleaseLockedError
from registry.release import (
    ReleaseStateReader,
    acquire_release_lock,
    publish_weight,
    repair_releases,
)
from registry.store import Registry
from retrain.cli import main
from retrain.cli.app import app
from retrain.cli.common import settings as cli_settings
from retrain.config.settings import Settings
from retrain.testing import ManualClock, Reading, ScriptedMetricsSource
from retrain.testing_serving import register_test_bundle
from tasks.release.canary import run_canary
from tasks.release.policy import CanaryOutcome, CanaryPolicy
from tasks.release.rollback import rollback

MODEL = "loans"
# Production-sized windows: on the manual clock a 30 s interval costs nothing.
POLICY = CanaryPolicy(steps=[50, 100], interval_s=30.0, min_requests=1, settle_timeout_s=0)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _release(
    registry: Registry, version: int, source: ScriptedMetricsSource, clock: ManualClock
) -> CanaryOutcome:
    return run_canary(
        registry, MODEL, version, POLICY, source, sleep=clock.sleep, clock=clock.monotonic
    )


def test_two_releases_of_one_model_never_overlap(registry: Registry, clock: ManualClock) -> None:
    register_test_bundle(registry, MODEL, champion=True)
    first = register_test_bundle(registry, MODEL, tag="a")
    second = register_test_bundle(registry, MODEL, tag="b")
    lease = acquire_release_lock(registry.catalog, MODEL, first, ttl_s=60, actor="t")
    source = ScriptedMetricsSource([], clock=clock.monotonic)
    with pytest.raises(ReleaseLockedError, match="in progress"):
        _release(registry, second, source, clock)
    assert source.calls == 0  # refused before it looked at any traffic
    aliases = registry.catalog.aliases(MODEL)  # the running release is left as it was
    assert aliases.get("release-lock") == first and "canary" not in aliases
    assert registry.catalog.get_model_version(MODEL, second).status != "rejected"
    lease.release()
    assert registry.catalog.get_alias(MODEL, "release-lock") is None


def test_an_interrupted_release_leaves_the_champion_at_full_traffic(
    registry: Registry, clock: ManualClock
) -> None:
    register_test_bundle(registry, MODEL, champion=True)
    candidate = register_test_bundle(registry, MODEL, tag="c")
    # Start, step 1 applied, then the process is killed while the first window is read.
    source = ScriptedMetricsSource(
        [Reading(), Reading(), KeyboardInterrupt()], clock=clock.monotonic
    )
    with pytest.raises(KeyboardInterrupt):
        _release(registry, candidate, source, clock)
    assert source.remaining == 0 and clock.sleeps == [POLICY.interval_s]
    state = ReleaseStateReader(registry.catalog).read(MODEL)
    assert (state.champion, state.canary, state.weight, state.locked_by) == (1, None, 0.0, None)
    assert registry.catalog.get_model_version(MODEL, candidate).status == "rejected"
    assert registry.catalog.events(MODEL, kinds=["canary.aborted"])


def test_a_canary_that_cannot_be_judged_is_aborted(registry: Registry, clock: ManualClock) -> None:
    register_test_bundle(registry, MODEL, champion=True)
    candidate = register_test_bundle(registry, MODEL, tag="unjudged")
    down = MetricsUnavailableError("model server stats unreadable: connection refused")
    source = ScriptedMetricsSource([down] * 3, clock=clock.monotonic)
    outcome = _release(registry, candidate, source, clock)
    assert outcome.status == "aborted"
    assert outcome.reason.startswith("metrics unavailable 3 times in a row")
    assert clock.sleeps == [1.0, 1.0]  # retried twice (error_limit), a second apart
    state = ReleaseStateReader(registry.catalog).read(MODEL)
    assert (state.champion, state.canary, state.locked_by) == (1, None, None)


def test_repair_clears_a_crashed_release_but_not_a_live_one(
    registry: Registry, clock: ManualClock
) -> None:
    register_test_bundle(registry, MODEL, champion=True)
    candidate = register_test_bundle(registry, MODEL, tag="crashed")
    acquire_release_lock(
        registry.catalog, MODEL, candidate, ttl_s=30, actor="t", clock=clock.time
    )  # never released
    publish_weight(registry.catalog, MODEL, candidate, 25.0)
    registry.catalog.set_alias(MODEL, "canary", candidate, expected=None, reason="t", actor="t")
    reader = ReleaseStateReader(registry.catalog, clock=clock.time)
    assert repair_releases(registry.catalog, now=clock.time()) == []  # the lease is still live
    assert reader.read(MODEL).weight == 25.0
    clock.advance(29)
    assert repair_releases(registry.catalog, now=clock.time()) == []  # one second to go
    clock.advance(2)
    assert reader.read(MODEL).weight == 0.0  # expired: routed at 0% before any repair
    assert repair_releases(registry.catalog, now=clock.time()) == [MODEL]
    state = reader.read(MODEL)
    assert (state.champion, state.canary, state.weight, state.locked_by) == (1, None, 0.0, None)
    aborted = registry.catalog.events(MODEL, kinds=["canary.aborted"])
    assert aborted and aborted[-1].payload == {"repair": True}


def test_first_version_is_promoted_without_a_canary(registry: Registry, clock: ManualClock) -> None:
    first = register_test_bundle(registry, MODEL)
    source = ScriptedMetricsSource([], clock=clock.monotonic)
    outcome = _release(registry, first, source, clock)
    assert outcome.status == "promoted" and outcome.steps == []
    assert source.calls == 0 and clock.sleeps == []
    assert registry.catalog.get_alias(MODEL, "champion") == first


def test_policy_rejects_bad_steps() -> None:
    with pytest.raises(ValueError, match="increase"):
        CanaryPolicy(steps=[50, 25])
    with pytest.raises(ValueError, match="percentages"):
        CanaryPolicy(steps=[0, 100])


def test_rollback_goes_to_the_last_good_champion(registry: Registry) -> None:
    for tag in ("v1", "v2", "v3"):
        register_test_bundle(registry, MODEL, tag=tag, champion=True)
    assert rollback(registry, MODEL, reason="v3 bad").to_version == 2
    assert rollback(registry, MODEL, reason="v2 bad too").to_version == 1  # skips rejected v3
    with pytest.raises(ConfigError, match="no earlier champion"):
        rollback(registry, MODEL, reason="again")
    assert rollback(registry, MODEL, 2, reason="explicit").to_version == 2


def test_rollback_command(
    registry: Registry,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RETRAIN_HOME", str(settings.home))
    cli_settings.cache_clear()
    try:
        register_test_bundle(registry, MODEL, champion=True)
        result = CliRunner().invoke(app, ["rollback", MODEL, "--reason", "nothing to go to"])
        assert isinstance(result.exception, ConfigError)
        monkeypatch.setattr(sys, "argv", ["retrain", "rollback", MODEL, "--reason", "x"])
        with pytest.raises(SystemExit) as exit_info:
            main()
        assert exit_info.value.code == 2
        assert "error:" in capsys.readouterr().err
        register_test_bundle(registry, MODEL, tag="v2", champion=True)
        result = CliRunner().invoke(app, ["rollback", MODEL, "--reason", "bad v2"])
        assert result.exit_code == 0, result.output
        assert registry.catalog.get_alias(MODEL, "champion") == 1
        rolled = registry.catalog.events(MODEL, kinds=["model.rolled_back"])
        assert rolled[-1].reason == "bad v2" and rolled[-1].actor == "cli"
    finally:
        cli_settings.cache_clear()
