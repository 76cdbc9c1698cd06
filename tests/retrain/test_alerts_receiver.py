"""The alert receiver as a sender sees it: auth, limits, dedup, one retrain per cooldown.

Requests go through Starlette's in-process client; the dispatcher's thread is stopped once the
app has started, so a test decides what was stored with ``AlertDispatcher.run_pending`` on a
``ManualClock``, and cooldowns pass by advancing it. The ``realtime`` tests leave the dispatcher
thread running and wait for it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from starlette.applications import Starlette

with warnings.catch_warnings():  # Starlette prefers httpx2 for its test client; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from registry.errors import LaunchError
from registry.store import Registry
from retrain.alerts.auth import sign_body
from retrain.alerts.dispatch import AlertDispatcher
from retrain.alerts.launchers import RecordingLauncher
from retrain.alerts.receiver import MAX_BODY_BYTES, create_app
from retrain.config.spec_store import list_registered_pipelines
from retrain.testing import ManualClock

SECRET = "hmac-secret"


@pytest.fixture
def launcher() -> RecordingLauncher:
    return RecordingLauncher()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@contextmanager
def _started(app: Starlette) -> Iterator[TestClient]:
    """The app started in process, its dispatcher thread stopped: decisions wait for
    ``_decide``."""
    with TestClient(app, raise_server_exceptions=False) as test_client:
        _dispatcher(test_client).stop()
        yield test_client


@pytest.fixture
def client(
    registry: Registry, launcher: RecordingLauncher, kit: SimpleNamespace, clock: ManualClock
) -> Iterator[TestClient]:
    kit.register_models(registry, ["loan-default", "churn"])
    app = create_app(
        registry, launcher, token=kit.token, hmac_secret=SECRET, models_ttl_s=0, clock=clock.time
    )
    with _started(app) as test_client:
        yield test_client


def _bearer(kit: SimpleNamespace) -> dict[str, str]:
    return {"Authorization": f"Bearer {kit.token}", "Content-Type": "application/json"}


def _dispatcher(client: TestClient) -> AlertDispatcher:
    dispatcher: AlertDispatcher = client.app.state.dispatcher  # type: ignore[attr-defined]
    return dispatcher


def _decide(client: TestClient) -> int:
    """Decide everything the receiver stored so far, here and now; how many alerts."""
    return _dispatcher(client).run_pending()


def _dispatcher_for(
    registry: Registry, launcher: RecordingLauncher, clock: ManualClock
) -> AlertDispatcher:
    models = {p.name: p for p in list_registered_pipelines(registry)}
    return AlertDispatcher(registry, launcher, lambda: models, clock=clock.time)


def test_signed_alert_is_accepted_and_starts_a_retrain(
    client: TestClient, launcher: RecordingLauncher, kit: SimpleNamespace
) -> None:
    body = kit.generic_body("loan-default")
    response = client.post("/alerts/generic", content=body, headers=sign_body(SECRET, body))
    assert response.status_code == 202
    assert launcher.calls == []  # acknowledged before anything is decided
    assert _decide(client) == 1
    assert [call[0] for call in launcher.calls] == ["loan-default"]


def test_bad_signature_is_refused_with_401(client: TestClient, kit: SimpleNamespace) -> None:
    body = kit.generic_body("loan-default")
    headers = sign_body("not-the-secret", body)
    response = client.post("/alerts/generic", content=body, headers=headers)
    assert response.status_code == 401
    assert "signature" in response.json()["error"]


def test_body_changed_after_signing_is_refused(client: TestClient, kit: SimpleNamespace) -> None:
    headers = sign_body(SECRET, kit.generic_body("loan-default"))
    response = client.post("/alerts/generic", content=kit.generic_body("churn"), headers=headers)
    assert response.status_code == 401


def test_stale_timestamp_is_refused(client: TestClient, kit: SimpleNamespace) -> None:
    body = kit.generic_body("loan-default")
    headers = sign_body(SECRET, body, timestamp=time.time() - 301)
    response = client.post("/alerts/generic", content=body, headers=headers)
    assert response.status_code == 401
    assert "5 minutes" in response.json()["error"]


def test_wrong_or_missing_credentials_are_refused(client: TestClient, kit: SimpleNamespace) -> None:
    body = kit.generic_body("loan-default")
    assert client.post("/alerts/generic", content=body).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.post("/alerts/generic", content=body, headers=wrong).status_code == 401
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    assert client.post("/alerts/generic", content=body, headers=basic).status_code == 401


def test_oversize_body_is_refused_with_413(client: TestClient, kit: SimpleNamespace) -> None:
    big = b'{"model": "loan-default", "reason": "' + b"x" * MAX_BODY_BYTES + b'"}'
    response = client.post("/alerts/generic", content=big, headers=_bearer(kit))
    assert response.status_code == 413


def test_oversize_streamed_body_without_length_is_refused(
    client: TestClient, kit: SimpleNamespace
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "loan-default", "reason": "'
        for _ in range(20):
            yield b"x" * 65536  # 1.25 MiB in all, no Content-Length
        yield b'"}'

    response = client.post("/alerts/generic", content=chunks(), headers=_bearer(kit))
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/alerts/generic", b"{not json", 400, "body is not JSON"),
        ("/alerts/generic", b"[1, 2]", 400, "body must be a JSON object"),
        ("/alerts/generic", b'{"status": "firing"}', 422, "model: required field is missing"),
        (
            "/alerts/generic",
            b'{"model": "loan-default", "status": "on fire"}',
            422,
            "status: Input should be 'firing' or 'resolved' (got 'on fire')",
        ),
        (
            "/alerts/generic",
            b'{"model": "Loan Default"}',
            422,
            "model: not a model name; use lowercase letters",
        ),
        (
            "/alerts/alertmanager",
            b'{"version": "4", "groupKey": "g", "status": "firing"}',
            422,
            "alerts: required field is missing",
        ),
        ("/alerts/nagios", b'{"model": "loan-default"}', 404, "unknown alert source"),
    ],
)
def test_sender_mistakes_get_a_4xx_naming_the_mistake(
    client: TestClient, kit: SimpleNamespace, path: str, body: bytes, status: int, error: str
) -> None:
    response = client.post(path, content=body, headers=_bearer(kit))
    assert response.status_code == status
    assert error in response.json()["error"]


def test_alertmanager_group_without_model_label_is_422(
    client: TestClient, kit: SimpleNamespace
) -> None:
    body = kit.alertmanager_body("loan-default").replace(b'"model"', b'"service"')
    response = client.post("/alerts/alertmanager", content=body, headers=_bearer(kit))
    assert response.status_code == 422
    assert "model" in response.json()["error"]


def test_hundred_repeats_of_one_alert_start_one_run(
    client: TestClient, launcher: RecordingLauncher, registry: Registry, kit: SimpleNamespace
) -> None:
    body = kit.alertmanager_body("loan-default")
    answers = [
        client.post("/alerts/alertmanager", content=body, headers=_bearer(kit)) for _ in range(100)
    ]
    assert {a.status_code for a in answers} == {202}
    assert sum(not a.json()["alerts"][0]["duplicate"] for a in answers) == 1
    assert _decide(client) == 1  # the repeats were stored once, so decided once
    assert len(launcher.calls) == 1
    assert len(registry.catalog.events("loan-default", kinds=["retrain.requested"])) == 1


def test_storm_over_ten_models_starts_at_most_one_run_per_model(
    registry: Registry, launcher: RecordingLauncher, kit: SimpleNamespace, clock: ManualClock
) -> None:
    models = [f"model-{i}" for i in range(10)]
    kit.register_models(registry, models)
    app = create_app(registry, launcher, token=kit.token, clock=clock.time)
    with _started(app) as client:
        for i in range(1000):
            body = kit.alertmanager_body(models[i % 10], fingerprint=f"fp-{i}")
            response = client.post("/alerts/alertmanager", content=body, headers=_bearer(kit))
            assert response.status_code == 202
        assert _decide(client) == 1000
    started = [call[0] for call in launcher.calls]
    assert sorted(started) == models
    states = [a.state for a in registry.catalog.pending_alerts()]
    assert states == []  # every alert decided: one submitted per model, the rest folded


def test_resolved_and_unknown_model_alerts_start_nothing(
    client: TestClient, launcher: RecordingLauncher, kit: SimpleNamespace
) -> None:
    resolved = kit.alertmanager_body("loan-default", status="resolved")
    answer = client.post("/alerts/alertmanager", content=resolved, headers=_bearer(kit))
    assert answer.status_code == 202
    unknown = kit.generic_body("no-such-model")
    answer = client.post("/alerts/generic", content=unknown, headers=_bearer(kit))
    assert answer.status_code == 202
    assert answer.json()["unknown_models"] == ["no-such-model"]
    assert _decide(client) == 2
    assert launcher.calls == []


def test_alerts_fold_into_the_run_in_flight_until_the_cooldown_ends(
    registry: Registry, launcher: RecordingLauncher, kit: SimpleNamespace, clock: ManualClock
) -> None:
    kit.register_models(registry, ["loan-default"], cooldown_minutes=10)
    dispatcher = _dispatcher_for(registry, launcher, clock)

    def alert(key: str) -> str:
        record, _ = registry.catalog.add_alert(
            key, source="generic", model="loan-default", status="firing", payload={}
        )
        return dispatcher.decide(record)

    assert alert("a") == "submitted"
    assert alert("b") == "folded"
    clock.advance(9 * 60)
    assert alert("b2") == "folded"  # still inside the cooldown
    clock.advance(2 * 60)
    launcher.running.add("run-1")  # the first retrain is still running: fold into it
    assert alert("c") == "folded"
    launcher.running.clear()
    clock.advance(4)
    assert alert("c2") == "folded"  # "is it running" is cached for 5 s
    clock.advance(6)  # past the "is it running" cache
    assert alert("d") == "submitted"
    assert len(launcher.calls) == 2


@pytest.mark.realtime
def test_sweeper_submits_alerts_left_received_by_a_crash(
    registry: Registry, launcher: RecordingLauncher, kit: SimpleNamespace
) -> None:
    kit.register_models(registry, ["loan-default"])
    registry.catalog.add_alert(
        "left-behind", source="generic", model="loan-default", status="firing", payload={}
    )
    app = create_app(registry, launcher, token=kit.token)
    with TestClient(app) as client:  # starting up sweeps the inbox, on the dispatcher thread
        assert _dispatcher(client).drain(timeout_s=20)
    assert [call[0] for call in launcher.calls] == ["loan-default"]
    assert registry.catalog.pending_alerts() == []


def test_failed_launch_leaves_the_alert_for_the_sweeper(
    registry: Registry, kit: SimpleNamespace
) -> None:
    class Down(RecordingLauncher):
        def start_retrain(self, model: str, *, idempotency_key: str, reason: str) -> str:
            raise LaunchError("Prefect API unreachable")

    kit.register_models(registry, ["loan-default"])
    models = {p.name: p for p in list_registered_pipelines(registry)}
    record, _ = registry.catalog.add_alert(
        "k", source="generic", model="loan-default", status="firing", payload={}
    )
    assert AlertDispatcher(registry, Down(), lambda: models).decide(record) == "received"
    assert [a.id for a in registry.catalog.pending_alerts()] == [record.id]
    up = RecordingLauncher()
    retry = AlertDispatcher(registry, up, lambda: models)
    assert retry.sweep() == 1
    assert retry.run_pending() == 1
    assert len(up.calls) == 1
    assert registry.catalog.pending_alerts() == []


def test_receiver_refuses_to_start_without_credentials(
    registry: Registry, launcher: RecordingLauncher
) -> None:
    from registry.errors import ConfigError

    with pytest.raises(ConfigError, match="RETRAIN_ALERTS_TOKEN"):
        create_app(registry, launcher)


def test_grafana_and_evidently_alerts_start_one_retrain_each(
    client: TestClient, launcher: RecordingLauncher, kit: SimpleNamespace
) -> None:
    import json

    grafana = json.loads(kit.alertmanager_body("churn", fingerprint="gf1"))
    grafana |= {"version": "1", "orgId": 1, "title": "[FIRING:1] drift", "state": "alerting"}
    answer = client.post("/alerts/grafana", json=grafana, headers=_bearer(kit))
    assert answer.status_code == 202
    report = {"model": "loan-default", "drift_share": 0.42, "report_id": "r-1"}
    for _ in range(3):  # the same report posted again is stored once
        answer = client.post("/alerts/evidently", json=report, headers=_bearer(kit))
        assert answer.status_code == 202
    assert answer.json()["alerts"][0]["duplicate"] is True
    assert _decide(client) == 2
    assert sorted(call[0] for call in launcher.calls) == ["churn", "loan-default"]


def test_after_a_failed_launch_prefect_gets_retry_after_s_before_the_next_try(
    registry: Registry, kit: SimpleNamespace, clock: ManualClock
) -> None:
    class DownOnce(RecordingLauncher):
        tries = 0

        def start_retrain(self, model: str, *, idempotency_key: str, reason: str) -> str:
            self.tries += 1
            if self.tries == 1:
                raise LaunchError("Prefect API unreachable")
            return super().start_retrain(model, idempotency_key=idempotency_key, reason=reason)

    kit.register_models(registry, ["loan-default"])
    launcher = DownOnce()
    dispatcher = _dispatcher_for(registry, launcher, clock)  # retry_after_s: 15 s
    record, _ = registry.catalog.add_alert(
        "k", source="generic", model="loan-default", status="firing", payload={}
    )
    assert dispatcher.decide(record) == "received"
    clock.advance(14.5)
    assert dispatcher.decide(record) == "received" and launcher.tries == 1  # not asked again
    clock.advance(0.5)
    assert dispatcher.decide(record) == "submitted" and launcher.tries == 2
    assert registry.catalog.pending_alerts() == []


@pytest.mark.realtime
def test_the_running_receiver_decides_on_its_own_thread(
    registry: Registry, launcher: RecordingLauncher, kit: SimpleNamespace
) -> None:
    kit.register_models(registry, ["loan-default", "churn"])
    app = create_app(registry, launcher, token=kit.token, hmac_secret=SECRET)
    with TestClient(app) as client:
        for model in ("loan-default", "churn", "loan-default"):
            body = kit.generic_body(model, key=f"{model}-drift")
            response = client.post("/alerts/generic", content=body, headers=sign_body(SECRET, body))
            assert response.status_code == 202
        assert _dispatcher(client).drain(timeout_s=20)
    assert sorted(call[0] for call in launcher.calls) == ["churn", "loan-default"]
    assert registry.catalog.pending_alerts() == []
