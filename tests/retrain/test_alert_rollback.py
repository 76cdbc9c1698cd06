"""Alerts that roll back: over loopback HTTP, with the real receiver and a real registry, a
firing ``action: rollback`` alert moves the champion back at once, once per incident; nothing
to roll back to, a stale alert or an unknown model is ignored with the reason; retrain alerts
are unaffected."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import retrain.cli  # noqa: F401  (attaches every command to the app)
from registry.records import AlertRecord
from registry.store import Registry
from retrain.alerts.dispatch import AlertDispatcher
from retrain.alerts.launchers import PrefectLauncher, RecordingLauncher, RetrainLauncher
from retrain.alerts.receiver import create_app
from retrain.cli.app import app as cli
from serving.runner import start_server

MODEL = "loan-default"


@dataclass
class Receiver:
    http: httpx.Client
    dispatcher: AlertDispatcher
    registry: Registry

    def post(self, source: str, body: bytes) -> dict[str, Any]:
        """Send an alert, wait until every stored alert is decided; the 202's body."""
        response = self.http.post(f"/alerts/{source}", content=body)
        assert response.status_code == 202, response.text
        assert self.dispatcher.drain(timeout_s=20)
        answer: dict[str, Any] = response.json()
        return answer

    def champion(self) -> int | None:
        return self.registry.catalog.get_alias(MODEL, "champion")

    def latest(self) -> AlertRecord:
        return self.registry.catalog.recent_alerts(limit=1)[0]


@contextmanager
def receiver(
    registry: Registry, kit: SimpleNamespace, launcher: RetrainLauncher
) -> Iterator[Receiver]:
    """The receiver on a loopback port, its dispatcher deciding on its own thread."""
    kit.register_models(registry, [MODEL, "churn"])
    app = create_app(registry, launcher, token=kit.token, models_ttl_s=0)
    with start_server(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        http.headers["Authorization"] = f"Bearer {kit.token}"
        yield Receiver(http, app.state.dispatcher, registry)


def promote(registry: Registry, model: str = MODEL) -> int:
    """Register a new version of ``model`` and make it champion; its number."""
    catalog = registry.catalog
    digest = registry.put_bytes(
        f"{model} bundle {len(catalog.list_model_versions(model))}".encode()
    )
    version = catalog.register_model_version(
        model, digest, metrics={}, lineage={}, reason="test"
    ).version
    current = catalog.get_alias(model, "champion")
    catalog.set_alias(model, "champion", version, expected=current, reason="promoted", actor="t")
    return version


def now_iso(offset_s: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z")


def rollback_alert(
    model: str = MODEL,
    *,
    fingerprint: str = "err1",
    starts_at: str | None = None,
    group: str = "errors",
    status: str = "firing",
    annotation: bool = False,
) -> bytes:
    """An Alertmanager notification of an error-ratio alert asking for a rollback (as a label,
    or as an annotation)."""
    labels = {"alertname": "RetrainErrorRatioHigh", "model": model, "severity": "page"}
    annotations = {"summary": f"5% of {model} requests fail"}
    (annotations if annotation else labels)["action"] = "rollback"
    document = {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="RetrainErrorRatioHigh", group="{group}"}}',
        "status": status,
        "receiver": "retrain-rollback",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": starts_at or now_iso(),
                "fingerprint": fingerprint,
            }
        ],
    }
    return json.dumps(document).encode()


@pytest.fixture
def launcher(any_registry: Registry) -> RecordingLauncher:
    return RecordingLauncher(any_registry)  # records rollbacks and does them in the registry


def test_a_rollback_alert_rolls_back_once_per_incident(
    any_registry: Registry, kit: SimpleNamespace, launcher: RecordingLauncher
) -> None:
    promote(any_registry)
    promote(any_registry)
    with receiver(any_registry, kit, launcher) as rx:
        first = rollback_alert()
        answer = rx.post("alertmanager", first)
        assert answer["alerts"][0]["action"] == "rollback"
        assert rx.champion() == 1
        decided = rx.latest()
        assert (decided.action, decided.state, decided.reason) == (
            "rollback",
            "rolled_back",
            "v2 -> v1",
        )
        event = any_registry.catalog.events(MODEL, kinds=["model.rolled_back"])[-1]
        assert event.actor == "alert-receiver"
        assert "RetrainErrorRatioHigh: 5% of loan-default requests fail" in event.reason

        # The same incident again: Alertmanager's repeat, and the same alert in another group.
        assert rx.post("alertmanager", first)["alerts"][0]["duplicate"] is True
        other_group = rollback_alert(group="by-model", starts_at=_starts_at(first))
        assert rx.post("alertmanager", other_group)["alerts"][0]["duplicate"] is False
        assert (rx.latest().state, rx.champion()) == ("duplicate", 1)
        assert "already rolled back: v2 -> v1" in (rx.latest().reason or "")

        # A new incident later: nothing left to roll back to (v2 is rejected, v1 was first).
        rx.post("alertmanager", rollback_alert(fingerprint="err2", starts_at=now_iso(1)))
        assert (rx.latest().state, rx.champion()) == ("ignored", 1)
        assert "nothing to roll back to" in (rx.latest().reason or "")

        # Once a new champion is out, a new incident rolls it back again.
        assert promote(any_registry) == 3
        rx.post("alertmanager", rollback_alert(fingerprint="err3", starts_at=now_iso(1)))
        assert (rx.latest().state, rx.champion()) == ("rolled_back", 1)
    assert [call[0] for call in launcher.rollbacks] == [MODEL, MODEL, MODEL]
    assert launcher.calls == []  # no retrain was started by any of them


def test_after_a_restart_the_same_incident_still_does_not_roll_back_twice(
    any_registry: Registry, kit: SimpleNamespace, launcher: RecordingLauncher
) -> None:
    for _ in range(3):
        promote(any_registry)
    first = rollback_alert()
    with receiver(any_registry, kit, launcher) as rx:
        rx.post("alertmanager", first)
        assert rx.champion() == 2
    # A new process: the incident is known from the event log alone (its idempotency key).
    again = rollback_alert(group="second-route", starts_at=_starts_at(first))
    with receiver(any_registry, kit, RecordingLauncher(any_registry)) as rx:
        rx.post("alertmanager", again)
        assert (rx.latest().state, rx.champion()) == ("duplicate", 2)
        assert rx.latest().reason == "incident already rolled back: v3 -> v2"


def test_generic_rollback_folds_by_dedup_key_and_the_annotation_asks_too(
    any_registry: Registry, kit: SimpleNamespace, launcher: RecordingLauncher
) -> None:
    for _ in range(3):
        promote(any_registry)
    body = json.dumps(
        {"model": MODEL, "action": "rollback", "reason": "bad answers", "dedup_key": "inc-7"}
    ).encode()
    with receiver(any_registry, kit, launcher) as rx:
        rx.post("generic", body)
        assert rx.champion() == 2
        assert rx.post("generic", body)["alerts"][0]["duplicate"] is True
        assert rx.champion() == 2
        event = any_registry.catalog.events(MODEL, kinds=["model.rolled_back"])[-1]
        assert event.reason.endswith(": bad answers") and event.actor == "alert-receiver"
        rx.post("alertmanager", rollback_alert(annotation=True, starts_at=now_iso(1)))
        assert (rx.latest().action, rx.champion()) == ("rollback", 1)


def test_stale_resolved_and_unknown_rollback_alerts_are_ignored_with_the_reason(
    any_registry: Registry,
    kit: SimpleNamespace,
    launcher: RecordingLauncher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    promote(any_registry)
    with receiver(any_registry, kit, launcher) as rx:
        before = now_iso(-60)  # the incident started before v2 became champion
        promote(any_registry)
        rx.post("alertmanager", rollback_alert(starts_at=before))
        assert (rx.latest().state, rx.champion()) == ("ignored", 2)
        assert rx.latest().reason == "champion changed to v2 after the alert started"

        rx.post("alertmanager", rollback_alert(fingerprint="r", status="resolved"))
        assert (rx.latest().state, rx.latest().reason, rx.champion()) == ("ignored", "resolved", 2)

        with caplog.at_level(logging.WARNING, logger="retrain.alerts.dispatch"):
            answer = rx.post("alertmanager", rollback_alert("ghost-model"))
        assert answer["unknown_models"] == ["ghost-model"]
        assert (rx.latest().state, rx.latest().reason) == ("ignored", "unknown model")
        assert any("'ghost-model'" in r.getMessage() for r in caplog.records)
        assert rx.champion() == 2
    assert launcher.rollbacks == []


def test_retrain_alerts_are_unaffected(
    any_registry: Registry, kit: SimpleNamespace, launcher: RecordingLauncher
) -> None:
    promote(any_registry)
    promote(any_registry)
    with receiver(any_registry, kit, launcher) as rx:
        answer = rx.post("alertmanager", kit.alertmanager_body(MODEL, starts_at=now_iso()))
        assert answer["alerts"][0]["action"] == "retrain"
        assert (rx.latest().state, rx.champion()) == ("submitted", 2)
        rx.post("generic", kit.generic_body("churn", key="drift-1"))
        assert [call[0] for call in launcher.calls] == [MODEL, "churn"]
        # A retrain and a rollback alert of one model in one group: both are acted on.
        mixed = json.loads(rollback_alert(fingerprint="e9"))
        drift = json.loads(kit.alertmanager_body(MODEL, fingerprint="d9", starts_at=now_iso()))
        mixed["alerts"].append(drift["alerts"][0])
        answer = rx.post("alertmanager", json.dumps(mixed).encode())
        assert sorted(a["action"] for a in answer["alerts"]) == ["retrain", "rollback"]
        assert rx.champion() == 1
        metrics = rx.http.get("/metrics").text
        assert 'retrain_alert_decisions_total{action="rollback",decision="rolled_back"} 1.0' in (
            metrics
        )
    assert launcher.rollbacks[0][0] == MODEL and len(launcher.rollbacks) == 1


def test_an_unknown_action_is_refused_naming_the_field(
    registry: Registry, kit: SimpleNamespace
) -> None:
    body = rollback_alert().replace(b'"action": "rollback"', b'"action": "reboot"')
    with receiver(registry, kit, RecordingLauncher(registry)) as rx:
        response = rx.http.post("/alerts/alertmanager", content=body)
        generic = {"model": MODEL, "action": "reboot"}
        refused = rx.http.post("/alerts/generic", json=generic)
    assert response.status_code == 422 and "unknown action" in response.json()["error"]
    assert refused.status_code == 422 and "action" in refused.json()["error"]


def test_a_launcher_without_rollbacks_rolls_back_directly_with_prefect_down(
    registry: Registry, kit: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # nothing listens there
    promote(registry)
    promote(registry)
    with receiver(registry, kit, PrefectLauncher()) as rx:
        rx.post("alertmanager", rollback_alert())
        assert (rx.latest().state, rx.champion()) == ("rolled_back", 1)


def test_alerts_send_rollback_and_alerts_ls_show_the_action_and_the_decision(
    home: Path, registry: Registry, kit: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRAIN_ALERTS_TOKEN", kit.token)
    for _ in range(3):
        promote(registry)
    with receiver(registry, kit, RecordingLauncher(registry)) as rx:
        first = rollback_alert()
        rx.post("alertmanager", first)
        rx.post("alertmanager", rollback_alert(group="again", starts_at=_starts_at(first)))
        url = str(rx.http.base_url)
        sent = CliRunner().invoke(cli, ["alerts", "send", MODEL, "--rollback", "--url", url])
        assert sent.exit_code == 0, sent.output
        assert rx.dispatcher.drain(timeout_s=20)
        assert rx.champion() == 1  # v3 -> v2 by the alert, v2 -> v1 by the command
    result = CliRunner().invoke(cli, ["alerts", "ls"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if MODEL in line]
    assert any(" rollback " in r and " rolled_back " in r and "v3 -> v2" in r for r in rows)
    assert any(" rollback " in r and " duplicate " in r for r in rows), result.output
    assert any(" generic " in r and " rolled_back " in r and "v2 -> v1" in r for r in rows)


def _starts_at(body: bytes) -> str:
    starts: str = json.loads(body)["alerts"][0]["startsAt"]
    return starts
