"""Three weeks of operation in a few minutes: three models, cron, drift monitor and alert
triggers, a drift incident that comes back after the cooldown, an alert storm, a failed scrape
in the middle of a canary, model-server restarts and a Prefect outage.

The test asserts the exact set of retrains (and which trigger started each), releases and
rollbacks, and that no request, alert or model version was lost on the way.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prefect.server.schemas.schedules import CronSchedule

from serving.faults import FaultSpec

pytestmark = pytest.mark.soak

DAYS = 21
SHIFTED_DAYS = range(3, 10)  # loan-default's applicants shift for a week, then come back


def _notification(
    model: str,
    *,
    starts_at: datetime,
    fingerprint: str,
    status: str = "firing",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An Alertmanager (webhook v4) notification carrying one alert."""
    alert_labels = {"alertname": "PredictionShift", "model": model, **(labels or {})}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="PredictionShift"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "retrain",
        "groupLabels": {"alertname": "PredictionShift"},
        "commonLabels": alert_labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": status,
                "labels": alert_labels,
                "annotations": {"summary": f"prediction shift on {model}"},
                "startsAt": starts_at.isoformat().replace("+00:00", "Z"),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": fingerprint,
            }
        ],
    }


def _cron(expression: str | None, start: datetime, days: int) -> list[datetime]:
    """When Prefect's scheduler would start a deployment on ``expression``."""
    if expression is None:
        return []
    schedule = CronSchedule(cron=expression, timezone="UTC")
    dates = schedule.get_dates(n=1000, start=start, end=start + timedelta(days=days))
    if inspect.isawaitable(dates):  # sync or async, depending on the caller's event loop
        dates = asyncio.run(_awaited(dates))
    return [datetime.fromtimestamp(d.timestamp(), UTC) for d in dates]


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _timeline(world: Any) -> list[tuple[datetime, int, str, Any]]:
    """Every event of the three weeks, as (when, order, label, action)."""
    events: list[tuple[datetime, int, str, Any]] = []

    def add(when: datetime, label: str, action: Any, order: int = 5) -> None:
        events.append((when, order, label, action))

    for name, spec in world.specs.items():
        for when in _cron(spec.schedule.retrain_cron, world.at(0), DAYS):
            add(when, f"cron {name}", lambda n=name: world.retrain(n, "schedule", run_id="cron"))
        for when in _cron(spec.schedule.monitor_cron, world.at(0), DAYS):
            add(when, f"monitor {name}", lambda n=name: world.monitor(n))
    for hour in range(0, DAYS * 24, 6):
        for name in world.specs:
            add(world.at(0, hour, 30), f"traffic {name}", lambda n=name: world.traffic(n, 5), 9)
    # Bootstrap: every model trained by hand once.
    for name in world.specs:
        add(world.at(0), f"bootstrap {name}", lambda n=name: world.retrain(n, "manual"), 0)

    # loss-given-default: incident A repeats every 5 min for an hour, then resolves...
    lgd, first = "loss-given-default", world.at(5, 9, 55)
    for minute in range(5, 65, 5):
        add(
            first + timedelta(minutes=minute),
            "incident A",
            lambda: world.alert(_notification(lgd, starts_at=first, fingerprint="lgd-shift")),
        )
    add(
        world.at(5, 11, 5),
        "incident A resolved",
        lambda: world.alert(
            _notification(lgd, starts_at=first, fingerprint="lgd-shift", status="resolved")
        ),
    )
    # ...and the same alert comes back next week: incident B, a server restart mid-canary.
    second = world.at(12, 9, 55)
    add(
        second + timedelta(minutes=5),
        "incident B",
        lambda: (
            world.restart_during_release(lgd, after_s=90),
            world.alert(_notification(lgd, starts_at=second, fingerprint="lgd-shift")),
        ),
    )
    for minute in range(10, 35, 5):
        add(
            second + timedelta(minutes=minute),
            "incident B repeat",
            lambda: world.alert(_notification(lgd, starts_at=second, fingerprint="lgd-shift")),
        )

    # A storm: 240 alerts in a minute, 80 incidents per model, plus a model nobody registered.
    storm = world.at(8, 14)

    def pour() -> None:
        for i in range(240):
            model = sorted(world.specs)[i % 3] if i % 40 else "nobody-knows"
            world.clock.advance(0.25)
            world.alert(_notification(model, starts_at=storm, fingerprint=f"storm-{i}"))

    add(storm, "storm", pour)

    # loan-default: a failed scrape in the canary of the d7 cron retrain; a faulty d14 candidate.
    loans = "loan-default"
    add(world.at(7, 2, 59), "failed scrape armed", lambda: world.fail_scrape_during_release(loans))
    add(
        world.at(14, 2, 59),
        "faulty candidate armed",
        lambda: world.faults.set(loans, world.next_version(loans), FaultSpec(error_rate=1.0)),
    )

    # early-default: the Prefect API is down 12:00-13:00 on d15; an alert arrives at 12:10.
    early = "early-default"
    add(world.at(15, 12), "Prefect outage", lambda: world.prefect_outage(world.at(15, 13)))
    add(
        world.at(15, 12, 10),
        "alert during outage",
        lambda: world.alert(
            {"model": early, "dedup_key": "eu-risk-1", "reason": "approval rate fell"}, "generic"
        ),
    )
    add(world.at(15, 12, 40), "still down", lambda: None)
    add(world.at(15, 13, 0), "Prefect back", lambda: None)
    # d17: early-default's v3 misbehaves in production; an error-ratio alert asks for a rollback,
    # and Alertmanager repeats it five minutes later (one incident: one rollback).
    page = world.at(17, 8, 58)
    for minute in (2, 7):
        add(
            page + timedelta(minutes=minute),
            "rollback alert",
            lambda: world.alert(
                _notification(
                    early,
                    starts_at=page,
                    fingerprint="early-errors",
                    labels={"action": "rollback", "alertname": "RetrainClientErrorRatioHigh"},
                )
            ),
        )
    # A model-server restart on a quiet night.
    add(world.at(18, 1), "server restart", world.restart_server)
    return sorted(events, key=lambda e: (e[0], e[1]))


def test_three_weeks_of_operation(world: Any) -> None:
    world.shifted["loan-default"] = SHIFTED_DAYS
    for when, _order, _label, action in _timeline(world):
        world.move_to(when)
        action()
        world.turn()
    world.move_to(world.at(DAYS))
    world.turn()

    assert world.runs == [
        ("d0 00h", "loan-default", "manual", "promoted"),
        ("d0 00h", "loss-given-default", "manual", "promoted"),
        ("d0 00h", "early-default", "manual", "promoted"),
        ("d0 03h", "loan-default", "schedule", "folded"),
        ("d2 04h", "loss-given-default", "schedule", "promoted"),
        ("d3 06h", "loan-default", "drift", "promoted"),
        ("d5 10h", "loss-given-default", "alert", "promoted"),
        ("d7 03h", "loan-default", "schedule", "promoted"),
        ("d8 14h", "loan-default", "alert", "promoted"),
        ("d8 14h", "loss-given-default", "alert", "promoted"),
        ("d8 14h", "early-default", "alert", "promoted"),
        ("d9 04h", "loss-given-default", "schedule", "folded"),
        ("d10 06h", "loan-default", "drift", "promoted"),
        ("d12 10h", "loss-given-default", "alert", "promoted"),
        ("d14 03h", "loan-default", "schedule", "aborted"),
        ("d15 13h", "early-default", "alert", "promoted"),
        ("d16 04h", "loss-given-default", "schedule", "promoted"),
    ], "\n".join(world.why)
    _releases_and_rollbacks(world)
    _nothing_lost(world)


def _releases_and_rollbacks(world: Any) -> None:
    """Who serves now, and every window that could not be judged or failed, and why."""
    events = world.registry.catalog.events()
    unusual = [
        (e.model, e.versions, e.reason)
        for e in events
        if e.kind == "canary.step" and e.payload.get("verdict") != "success"
    ]
    assert unusual == [
        # d7: a scrape missed the candidate's series; that window is not judged, the next are.
        ("loan-default", [2, 3], "metrics: v3's series missing from a snapshot (failed scrape?)"),
        # d12: the model server restarted mid-canary; its counters reset.
        ("loss-given-default", [4, 5], "metrics: the model server restarted (counters reset)"),
        # d14: a candidate that fails every request is stopped at its first step.
        ("loan-default", [5, 6], "error_rate=1 over 0.01 (canary errors)"),
    ]
    rollbacks = [(e.model, e.versions, e.actor) for e in events if e.kind == "model.rolled_back"]
    assert rollbacks == [("early-default", [3, 2], "alert-receiver")]
    catalog = world.registry.catalog
    champions = {m: catalog.get_alias(m, "champion") for m in world.specs}
    assert champions == {"loan-default": 5, "loss-given-default": 6, "early-default": 2}
    statuses = {m: [v.status for v in catalog.list_model_versions(m)] for m in world.specs}
    assert statuses == {
        "loan-default": ["retired"] * 4 + ["champion", "rejected"],
        "loss-given-default": ["retired"] * 5 + ["champion"],
        "early-default": ["retired", "champion", "rejected"],
    }
    assert all(catalog.get_alias(m, "canary") is None for m in world.specs)


def _nothing_lost(world: Any) -> None:
    """Every request answered, every alert decided, every stored byte intact."""
    assert world.requests.failed == []
    assert world.requests.answered == world.requests.sent > 3000
    assert world.restarts == 2
    alerts = world.registry.catalog.recent_alerts(limit=10_000)
    decided = Counter((a.model, a.action, a.state) for a in alerts)
    assert decided == {
        # The storm: 80 incidents per model in a minute, each model retrained once.
        ("loan-default", "retrain", "submitted"): 1,
        ("loan-default", "retrain", "folded"): 77,
        # Incidents A and B (each repeated, one row each), the storm, and A's resolution.
        ("loss-given-default", "retrain", "submitted"): 3,
        ("loss-given-default", "retrain", "folded"): 77,
        ("loss-given-default", "retrain", "ignored"): 1,
        # The storm, and the alert that arrived while Prefect was down (retried, not lost).
        ("early-default", "retrain", "submitted"): 2,
        ("early-default", "retrain", "folded"): 77,
        ("early-default", "rollback", "rolled_back"): 1,
        ("nobody-knows", "retrain", "ignored"): 6,
    }
    assert world.launcher.refused >= 1  # the outage was felt, and waited out
    assert world.registry.verify().ok
