"""The one trigger decision, over weeks of simulated time, as every route takes it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from registry.store import Registry
from tasks.pipeline.trigger import (
    RETRAIN_REQUESTED,
    RETRAIN_STARTED,
    LastRetrain,
    decide,
    decide_trigger,
    last_retrain,
    record_trigger,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MODEL = "loan-default"


def test_by_hand_always_starts_even_inside_the_cooldown() -> None:
    last = LastRetrain(T0, "run-1", "alert")
    verdict = decide(last, "manual", cooldown_minutes=60, now=T0 + timedelta(minutes=1))
    assert verdict.start


@pytest.mark.parametrize("trigger", ["alert", "drift", "schedule"])
def test_automatic_triggers_fold_inside_the_cooldown_and_start_after(trigger: str) -> None:
    last = LastRetrain(T0, "run-1", "manual")
    inside = decide(last, trigger, cooldown_minutes=60, now=T0 + timedelta(minutes=59))
    assert not inside.start
    assert inside.folded_into == "run-1"
    assert "cooldown 60 min" in inside.reason
    after = decide(last, trigger, cooldown_minutes=60, now=T0 + timedelta(minutes=61))
    assert after.start


def test_a_retrain_still_running_absorbs_triggers_after_its_cooldown() -> None:
    last = LastRetrain(T0, "run-1", "alert")
    later = T0 + timedelta(hours=3)
    running = decide(
        last, "drift", cooldown_minutes=60, now=later, is_running=lambda run: run == "run-1"
    )
    assert not running.start
    assert running.folded_into == "run-1"
    assert decide(last, "drift", cooldown_minutes=60, now=later).start


def test_drift_triggers_turned_off_start_nothing_but_schedules_still_run() -> None:
    for trigger in ("alert", "drift"):
        verdict = decide(None, trigger, cooldown_minutes=60, now=T0, drift_triggers=False)
        assert not verdict.start
        assert "off" in verdict.reason
    assert decide(None, "schedule", cooldown_minutes=60, now=T0, drift_triggers=False).start


def test_six_weeks_of_hourly_alerts_and_drift_start_one_retrain_per_cooldown(
    registry: Registry,
) -> None:
    """Alerts every 20 minutes and an hourly drift check, all firing, for six weeks, with a
    cooldown of one day: every route reads the same event log, so exactly one retrain a day
    starts, whichever route asks first."""
    cooldown_minutes = 24 * 60
    started: list[tuple[datetime, str]] = []
    now = T0
    end = T0 + timedelta(weeks=6)
    run = 0
    while now < end:
        route = "drift" if now.minute == 0 else "alert"
        verdict = decide_trigger(registry, MODEL, route, cooldown_minutes=cooldown_minutes, now=now)
        if verdict.start:
            run += 1
            kind = RETRAIN_REQUESTED if route == "alert" else RETRAIN_STARTED
            record_trigger(
                registry,
                kind,
                MODEL,
                route,
                now=now,
                run_id=f"run-{run}",
                reason=verdict.reason,
                actor="test",
            )
            started.append((now, route))
        now += timedelta(minutes=20)
    assert len(started) == 6 * 7
    gaps = {b[0] - a[0] for a, b in itertools.pairwise(started)}
    assert gaps == {timedelta(days=1)}
    assert last_retrain(registry, MODEL) == LastRetrain(
        started[-1][0], f"run-{run}", started[-1][1]
    )


def test_a_run_does_not_fold_into_its_own_request(registry: Registry) -> None:
    """The receiver records ``retrain.requested`` for the run it starts; that run's own
    decision must not read its request as an earlier retrain."""
    record_trigger(
        registry,
        RETRAIN_REQUESTED,
        MODEL,
        "alert",
        now=T0,
        run_id="run-7",
        reason="alert",
        actor="alert-receiver",
    )
    own = decide_trigger(
        registry,
        MODEL,
        "alert",
        cooldown_minutes=60,
        now=T0 + timedelta(seconds=5),
        run_id="run-7",
    )
    assert own.start
    other = decide_trigger(
        registry,
        MODEL,
        "alert",
        cooldown_minutes=60,
        now=T0 + timedelta(seconds=5),
        run_id="run-8",
    )
    assert not other.start
    assert other.folded_into == "run-7"
