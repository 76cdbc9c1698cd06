"""The model server's limits and credentials, as a caller meets them: bodies and batches past
the limits (413/422), a streamed body read only up to its limit, request ids that cannot take
over another caller's answer (400/409), a bounded feedback log, the optional bearer token
(401), and predictions off the event loop. Nothing refused moves a counter.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from registry.store import Registry
from serving.app import create_app
from serving.limits import ServeLimits
from serving.runner import start_server
from serving.server import ModelServer

MODEL = "loans"
Rows = tuple[list[dict[str, Any]], list[float]]
Limited = Callable[..., TestClient]
PREDICT = f"/v1/models/{MODEL}:predict"
FEEDBACK = f"/v1/models/{MODEL}:feedback"


def raw_post(client: TestClient, path: str, text: str) -> Any:
    return client.post(path, content=text.encode())


def test_batches_and_bodies_over_the_limits_are_refused(
    counters: Any, register: Any, limited: Limited, rows: Rows
) -> None:
    register(champion=True)
    client = limited(max_instances=10, max_body_bytes=20_000)
    before = counters(client)
    many = client.post(PREDICT, json={"instances": rows[0][:11]})
    assert many.status_code == 422 and many.json()["field"] == "instances"
    assert "at most 10" in many.json()["error"]
    padded = client.post(PREDICT, json={"instances": [rows[0][0]], "pad": "x" * 30_000})
    assert padded.status_code == 413 and padded.json()["field"] == "body"
    labels = [{"request_id": f"r{i}", "labels": [1]} for i in range(11)]
    assert client.post(FEEDBACK, json={"feedback": labels}).status_code == 422
    deep = raw_post(client, PREDICT, "[" * 5000 + "]" * 5000)
    assert deep.status_code == 400 and deep.json()["field"] == "body"
    assert counters(client) == before
    assert client.post(PREDICT, json={"instances": rows[0][:10]}).status_code == 200


def test_a_streamed_body_is_read_only_up_to_the_limit(register: Any, limited: Limited) -> None:
    register(champion=True)
    client = limited(max_body_bytes=100_000)
    app, chunk, pulled = client.app, b"x" * 16_384, []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:  # an endless chunked body: 50 MB of padding, and on
        pulled.append(len(chunk))
        return {"type": "http.request", "body": chunk, "more_body": len(pulled) < 3200}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": PREDICT, "raw_path": PREDICT.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"model-server")], "server": ("t", 80),
        "client": ("t", 1), "state": {},
    }  # fmt: skip
    client.portal.call(app, scope, receive, send)  # type: ignore[union-attr]
    assert sent[0]["status"] == 413
    assert sum(pulled) <= 100_000 + len(chunk)  # it stopped at the limit, not at 50 MB


def test_request_ids_are_checked_and_never_overwrite_another_answer(
    set_canary: Any,
    counters: Any,
    register: Any,
    limited: Limited,
    rows: Rows,
) -> None:
    register(champion=True)
    canary = register(tag="canary")
    client = limited(request_id_max_chars=40)
    one = {"instances": [rows[0][0]]}
    for bad in ("x" * 41, "spaces are not allowed", "semi;colon", ""):
        refused = client.post(PREDICT, json=one, headers={"X-Request-Id": bad})
        assert refused.status_code == 400 and refused.json()["field"] == "x-request-id"
    first = client.post(PREDICT, json=one, headers={"X-Request-Id": "order-42"})
    assert first.json()["request_id"] == "order-42" and first.json()["variant"] == "champion"
    set_canary(canary)
    client.app.state.server.follower.poll_once()  # type: ignore[attr-defined]
    before = counters(client)
    again = client.post(PREDICT, json=one, headers={"X-Request-Id": "order-42"})
    assert again.status_code == 409 and again.json()["field"] == "x-request-id"
    assert counters(client) == before
    labelled = client.post(FEEDBACK, json={"request_id": "order-42", "labels": [1]})
    assert labelled.json() == {"accepted": 1, "unknown": 0}
    by_variant = {s["variant"]: s["feedback"]["count"] for s in counters(client)[0]}
    assert by_variant == {"champion": 1}  # the label reached the version that answered it
    reused = client.post(PREDICT, json=one, headers={"X-Request-Id": "order-42"})
    assert reused.status_code == 200 and reused.json()["variant"] == "canary"  # free again


def test_the_feedback_log_holds_a_bounded_number_of_predictions(
    register: Any, limited: Limited, rows: Rows
) -> None:
    register(champion=True)
    client = limited(feedback_max_predictions=50)
    server: ModelServer = client.app.state.server  # type: ignore[attr-defined]
    for _ in range(8):
        assert client.post(PREDICT, json={"instances": rows[0][:20]}).status_code == 200
    assert server.feedback_log.held <= 50 and len(server.feedback_log) == 2


def test_a_token_guards_everything_but_predict_health_and_metrics(
    counters: Any, register: Any, limited: Limited, rows: Rows
) -> None:
    register(champion=True)
    client = limited(token="s3cret")
    good, wrong = {"Authorization": "Bearer s3cret"}, {"Authorization": "Bearer s3cre"}
    before = counters(client, good)
    guarded = [
        ("POST", FEEDBACK, {"request_id": "r", "labels": [1]}),
        ("GET", f"/v1/models/{MODEL}:stats", None),
        ("POST", f"/v1/models/{MODEL}:reset-latency", None),
        ("GET", f"/v1/models/{MODEL}", None),
        ("GET", "/v1/models", None),
    ]
    for method, path, body in guarded:
        for headers in ({}, wrong, {"Authorization": "Basic czNjcmV0"}):
            refused = client.request(method, path, json=body, headers=headers)
            assert refused.status_code == 401, (path, refused.text)
            assert refused.headers["www-authenticate"] == "Bearer"
            assert refused.json()["field"] == "authorization"
        assert client.request(method, path, json=body, headers=good).status_code == 200
    assert counters(client, good) == before
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200
    assert client.post(PREDICT, json={"instances": [rows[0][0]]}).status_code == 200


def test_predict_needs_the_token_when_configured(
    counters: Any, register: Any, limited: Limited, rows: Rows
) -> None:
    register(champion=True)
    client = limited(token="s3cret", auth_predict=True)
    before = counters(client, {"Authorization": "Bearer s3cret"})
    refused = client.post(PREDICT, json={"instances": [rows[0][0]]})
    assert refused.status_code == 401 and refused.json()["error"].startswith("missing")
    unserved = client.post("/v1/models/nope:predict", json={"instances": [rows[0][0]]})
    assert unserved.status_code == 401  # not even which models exist
    assert counters(client, {"Authorization": "Bearer s3cret"}) == before
    answered = client.post(
        PREDICT, json={"instances": [rows[0][0]]}, headers={"Authorization": "Bearer s3cret"}
    )
    assert answered.status_code == 200


@pytest.mark.realtime
def test_a_declared_oversized_body_is_refused_before_it_is_sent(
    registry: Registry, register: Any
) -> None:
    """Over loopback HTTP: a 50 MB Content-Length gets its 413 while the body is still unsent."""
    register(champion=True)
    app = create_app(registry, [MODEL])
    with start_server(app) as running:
        url = httpx.URL(running.url)
        sock = socket.create_connection((url.host, url.port or 80), timeout=5)
        head = (
            f"POST {PREDICT} HTTP/1.1\r\nHost: model-server\r\n"
            "Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n"
        )
        with sock:
            sock.sendall(head.encode() + b'{"instances": [')
            raw = b""
            while not raw.endswith(b"}"):  # the JSON error body ends the answer
                chunk = sock.recv(65536)
                if not chunk:
                    break
                raw += chunk
        answer = raw.decode()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert '"field":"body"' in answer and "larger than 1048576 bytes" in answer
    assert app.state.server.book.snapshot(MODEL)["series"] == []


@pytest.mark.realtime
def test_off_the_event_loop_a_slow_prediction_holds_up_no_one(
    registry: Registry, register: Any, rows: Rows
) -> None:
    """A maximal request is scored on a worker thread: others are answered meanwhile."""
    register(champion=True)
    app = create_app(registry, [MODEL], limits=ServeLimits(predict_threads=2))
    release, entered = threading.Event(), threading.Event()
    with start_server(app) as running:
        server: ModelServer = app.state.server
        bundle = server.follower.routes[MODEL].champion.bundle  # type: ignore[union-attr]
        real = bundle.predict

        def held(instances: Any) -> Any:  # the big request waits inside the model until told
            if len(instances) > 1:
                entered.set()
                release.wait(10)
            return real(instances)

        bundle.predict = held
        big: list[int] = []

        def send_big() -> None:
            body = {"instances": rows[0][:1000]}
            big.append(httpx.post(running.url + PREDICT, json=body, timeout=20).status_code)

        worker = threading.Thread(target=send_big)
        worker.start()
        try:
            assert entered.wait(10)
            small = httpx.post(running.url + PREDICT, json={"instances": [rows[0][0]]}, timeout=5)
            assert small.status_code == 200 and not big  # answered while the big one is held
        finally:
            release.set()
            worker.join(20)
    assert big == [200]


@pytest.mark.realtime
def test_the_canary_reads_a_guarded_servers_stats_with_the_configured_token(
    registry: Registry, register: Any, tmp_path: Any
) -> None:
    """``RETRAIN_SERVE_TOKEN`` reaches both ends: ``retrain serve``'s limits and the canary's
    stats source; without it the source gets one clear error, not a half-read snapshot."""
    from registry.errors import ConfigError, MetricsUnavailableError
    from retrain.cli.serve_cmds import serve_limits
    from retrain.config.settings import Settings
    from retrain.config.wiring import build_metrics_source
    from tasks.release.metric_sources import ServerStatsSource

    register(champion=True)
    settings = Settings(home=tmp_path, serve_token="s3cret", serve_max_instances=7)
    limits = serve_limits(settings)
    assert (limits.token, limits.max_instances, limits.auth_predict) == ("s3cret", 7, False)
    assert "s3cret" not in repr(limits)
    with pytest.raises(ConfigError, match="RETRAIN_SERVE_TOKEN"):
        serve_limits(Settings(home=tmp_path, serve_auth_predict=True))
    with start_server(create_app(registry, [MODEL], limits=limits)) as running:
        url = httpx.URL(running.url)
        wired = Settings(home=tmp_path, serve_port=url.port, serve_token="s3cret")
        assert build_metrics_source(wired).snapshot(MODEL).routing["champion"] == 1  # type: ignore[index]
        with pytest.raises(MetricsUnavailableError, match="401"):
            ServerStatsSource(running.url).snapshot(MODEL)
