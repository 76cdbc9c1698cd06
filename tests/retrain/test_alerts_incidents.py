"""Incidents, not keys: a recurring alert starts a retrain per incident after the cooldown,
repeats of one incident fold, the inbox says why, old decided alerts are pruned."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from starlette.applications import Starlette
from typer.testing import CliRunner

with warnings.catch_warnings():  # Starlette prefers httpx2 for its test client; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

import retrain.cli  # noqa: F401  (attaches every command to the app)
from registry.schema import utcnow
from registry.store import Registry
from retrain.alerts.dispatch import AlertDispatcher
from retrain.alerts.launchers import RecordingLauncher
from retrain.alerts.payloads import parse_alerts
from retrain.alerts.receiver import create_app
from retrain.cli.app import app as cli
from retrain.config.spec_store import list_registered_pipelines
from retrain.testing import ManualClock

HOUR = 3600.0


@pytest.fixture
def launcher() -> RecordingLauncher:
    return RecordingLauncher()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def client(
    registry: Registry, launcher: RecordingLauncher, kit: SimpleNamespace, clock: ManualClock
) -> Iterator[TestClient]:
    kit.register_models(registry, ["loan-default", "churn"], cooldown_minutes=60)
    receiver: Starlette = create_app(
        registry, launcher, token=kit.token, models_ttl_s=0, clock=clock.time
    )
    with TestClient(receiver, raise_server_exceptions=False) as test_client:
        _dispatcher(test_client).stop()  # decisions wait for run_pending, on the manual clock
        test_client.headers["Authorization"] = f"Bearer {kit.token}"
        yield test_client


def _dispatcher(client: TestClient) -> AlertDispatcher:
    dispatcher: AlertDispatcher = client.app.state.dispatcher  # type: ignore[attr-defined]
    return dispatcher


def _post(client: TestClient, source: str, body: bytes) -> dict[str, object]:
    response = client.post(f"/alerts/{source}", content=body)
    assert response.status_code == 202, response.text
    answer: dict[str, object] = response.json()
    return answer


def _duplicate(answer: dict[str, object]) -> bool:
    alerts = answer["alerts"]
    assert isinstance(alerts, list)
    return bool(alerts[0]["duplicate"])


def test_one_alert_firing_as_two_incidents_starts_two_retrains(
    client: TestClient, launcher: RecordingLauncher, kit: SimpleNamespace, clock: ManualClock
) -> None:
    first = kit.alertmanager_body("loan-default", starts_at="2026-11-21T10:00:00Z")
    assert not _duplicate(_post(client, "alertmanager", first))
    for _ in range(3):  # Alertmanager repeating the notification: stored once
        assert _duplicate(_post(client, "alertmanager", first))
    assert _dispatcher(client).run_pending() == 1
    clock.advance(2 * HOUR)  # past the 60 min cooldown; the alert fires again next week
    again = kit.alertmanager_body("loan-default", starts_at="2026-11-28T09:00:00Z")
    assert not _duplicate(_post(client, "alertmanager", again))
    assert _dispatcher(client).run_pending() == 1
    assert [call[0] for call in launcher.calls] == ["loan-default", "loan-default"]


def test_new_incidents_inside_the_cooldown_fold_into_the_retrain(
    client: TestClient,
    registry: Registry,
    launcher: RecordingLauncher,
    kit: SimpleNamespace,
    clock: ManualClock,
) -> None:
    for minute in range(3):
        body = kit.alertmanager_body("loan-default", starts_at=f"2026-11-21T10:0{minute}:00Z")
        _post(client, "alertmanager", body)
        clock.advance(60)
    assert _dispatcher(client).run_pending() == 3
    assert len(launcher.calls) == 1
    states = [a.state for a in registry.catalog.recent_alerts()]
    assert sorted(states) == ["folded", "folded", "submitted"]


def test_generic_alerts_are_one_incident_per_hour_or_per_dedup_key(
    client: TestClient, launcher: RecordingLauncher, kit: SimpleNamespace, clock: ManualClock
) -> None:
    body = kit.generic_body("churn")
    assert not _duplicate(_post(client, "generic", body))
    assert _duplicate(_post(client, "generic", body))  # the same hour: one incident
    assert _dispatcher(client).run_pending() == 1
    clock.advance(2 * HOUR)
    assert not _duplicate(_post(client, "generic", body))  # later: a new incident
    keyed = kit.generic_body("churn", key="incident-7")
    assert not _duplicate(_post(client, "generic", keyed))
    assert _dispatcher(client).run_pending() == 2  # one retrain, the keyed alert folded in
    clock.advance(5 * HOUR)
    assert _duplicate(_post(client, "generic", keyed))  # the sender's key names the incident
    assert _dispatcher(client).run_pending() == 0
    assert len(launcher.calls) == 2  # the first, then the one two hours later


def test_alertmanager_keys_name_the_incident() -> None:
    import json

    doc = {
        "groupKey": "g",
        "status": "firing",
        "alerts": [
            {"status": "firing", "labels": {"model": "churn"}, "fingerprint": "f1"},
        ],
    }

    def dedup(**alert: str) -> str:
        document = json.loads(json.dumps(doc))
        document["alerts"][0] |= alert
        return parse_alerts("alertmanager", json.dumps(document).encode()).signals[0].dedup_key

    assert dedup(startsAt="2026-01-01T00:00:00Z") == dedup(startsAt="2026-01-01T00:00:00Z")
    assert dedup(startsAt="2026-01-01T00:00:00Z") != dedup(startsAt="2026-01-08T00:00:00Z")
    assert dedup(startsAt="2026-01-01T00:00:00Z") != dedup(
        startsAt="2026-01-01T00:00:00Z", fingerprint="f2"
    )


def test_alerts_ls_shows_each_decision_and_why(
    home: Path,
    registry: Registry,
    launcher: RecordingLauncher,
    kit: SimpleNamespace,
    clock: ManualClock,
) -> None:
    kit.register_models(registry, ["loan-default"], cooldown_minutes=60)
    kit.register_models(registry, ["quiet-model"], drift=False)
    models = {p.name: p for p in list_registered_pipelines(registry)}
    dispatcher = AlertDispatcher(registry, launcher, lambda: models, clock=clock.time)
    for key, model, status in [
        ("a", "loan-default", "firing"),
        ("b", "loan-default", "firing"),
        ("c", "loan-default", "resolved"),
        ("d", "no-such-model", "firing"),
        ("e", "quiet-model", "firing"),
    ]:
        record, _ = registry.catalog.add_alert(
            key, source="generic", model=model, status=status, payload={}
        )
        dispatcher.submit(record)
    assert dispatcher.run_pending() == 5
    result = CliRunner().invoke(cli, ["alerts", "ls"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()

    def line(model: str, state: str) -> str:
        found = [row for row in lines if model in row and f" {state} " in row]
        assert found, result.output
        return found[0]

    assert "run-1" in line("loan-default", "submitted")
    assert "folded into the retrain" in line("loan-default", "folded")
    assert "resolved" in line("loan-default", "ignored")
    assert "unknown model" in line("no-such-model", "ignored")
    assert "triggers off" in line("quiet-model", "ignored")
    only = CliRunner().invoke(cli, ["alerts", "ls", "--model", "quiet-model", "--limit", "5"])
    assert "quiet-model" in only.output and "no-such-model" not in only.output


def test_unknown_models_are_logged_once_per_model_per_hour(
    registry: Registry,
    launcher: RecordingLauncher,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher = AlertDispatcher(registry, launcher, lambda: {}, clock=clock.time)

    def alert(key: str, model: str) -> None:
        record, _ = registry.catalog.add_alert(
            key, source="generic", model=model, status="firing", payload={}
        )
        assert dispatcher.decide(record) == "ignored"

    with caplog.at_level(logging.WARNING, logger="retrain.alerts.dispatch"):
        alert("a", "ghost")
        alert("b", "ghost")
        alert("c", "phantom")
        clock.advance(59 * 60)
        alert("d", "ghost")
        clock.advance(2 * 60)
        alert("e", "ghost")
    logged = [r.getMessage() for r in caplog.records if "no registered pipeline" in r.getMessage()]
    assert [("'ghost'" in m, "'phantom'" in m) for m in logged] == [
        (True, False),
        (False, True),
        (True, False),
    ]


def test_pruning_removes_old_decided_alerts_and_keeps_received_ones(
    registry: Registry, launcher: RecordingLauncher, kit: SimpleNamespace
) -> None:
    kit.register_models(registry, ["loan-default"])
    catalog = registry.catalog
    decided, _ = catalog.add_alert(
        "old", source="generic", model="loan-default", status="resolved", payload={}
    )
    catalog.mark_alert(decided.id, "ignored", reason="resolved")
    waiting, _ = catalog.add_alert(
        "waiting", source="generic", model="loan-default", status="firing", payload={}
    )
    assert catalog.prune_alerts(utcnow() - timedelta(days=1)) == 0  # nothing that old
    assert catalog.prune_alerts(utcnow() + timedelta(seconds=1)) == 1
    assert [a.id for a in catalog.recent_alerts()] == [waiting.id]  # received: kept
    # The dispatcher's sweep prunes with its retention, on its clock.
    clock = ManualClock(time.time())  # rows are dated by the real clock
    models = {p.name: p for p in list_registered_pipelines(registry)}
    dispatcher = AlertDispatcher(
        registry, launcher, lambda: models, clock=clock.time, retention_days=30
    )
    assert dispatcher.sweep() == 1 and dispatcher.run_pending() == 1
    assert [a.state for a in catalog.recent_alerts()] == ["submitted"]
    clock.advance(31 * 86400)
    dispatcher.sweep()
    assert catalog.recent_alerts() == []
    # the key is free again: the same incident key arriving later is a new alert
    _, created = catalog.add_alert(
        "waiting", source="generic", model="loan-default", status="firing", payload={}
    )
    assert created
