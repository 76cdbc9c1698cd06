"""The alert receiver against hostile senders, over loopback HTTP (uvicorn, the real inbox).

Whatever a sender posts, the answer is never a 5xx for its mistake, a refused body leaves no
row behind, the event loop never waits on the database (a locked SQLite gets a 503 within the
bound while ``/healthz`` answers), slow bodies time out, and a signature's timestamp is whole
seconds. Label and encoding cases run on SQLite and on PostgreSQL (marker ``postgres``), whose
drivers refuse different things.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from registry.errors import ConfigError
from registry.store import Registry
from retrain.alerts.auth import SIGNATURE_HEADER, TIMESTAMP_HEADER
from retrain.alerts.inbox_writer import InboxWriter
from retrain.alerts.payloads import MAX_ALERTS

pytestmark = pytest.mark.realtime
NUL_OR_SURROGATE = "contains a NUL character or a lone UTF-16 surrogate"


def alertmanager(kit: SimpleNamespace, *edits: Callable[[dict[str, Any]], None]) -> bytes:
    """An Alertmanager notification for loan-default, changed by ``edits`` (JSON, escaped)."""
    document = json.loads(kit.alertmanager_body("loan-default"))
    for edit in edits:
        edit(document)
    return json.dumps(document).encode()


def second_alert(model: str, **labels: str) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        extra = {"status": "firing", "labels": {"model": model, **labels}, "fingerprint": model}
        document["alerts"].append(extra)

    return edit


def label(name: str, value: str, *, where: str = "labels") -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        document["alerts"][0][where][name] = value

    return edit


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"model": "loan-default", "n": ' + b"7" * 5000 + b"}", "longer than 32 characters"),
        (b'{"model": "loan-default", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}", "deeper than 32"),
        (b'{"model": "loan-default", "drift_share": NaN}', "NaN, which is not JSON"),
        (b'{"model": "loan-default", "x": -Infinity}', "-Infinity, which is not JSON"),
        (b'{"model": "loan-default", "x": 1e999}', "too large for a float"),
        (b'{"model": "loan-default", "reason": "\xed\xa0\x80"}', "body is not UTF-8"),
    ],
)
def test_hostile_json_gets_400_naming_the_problem_and_stores_nothing(
    registry: Registry, kit: SimpleNamespace, body: bytes, error: str
) -> None:
    with kit.serve_receiver(registry) as http:
        for route in ("/alerts/generic", "/alerts/evidently", "/alerts/alertmanager"):
            answer = http.post(route, content=body)
            assert answer.status_code == 400, answer.text
            assert error in answer.json()["error"]
    assert kit.inbox_rows(registry) == 0


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (label("team", "a\x00b"), f"alerts[0].labels.team: {NUL_OR_SURROGATE}"),
        (label("team", "\ud800"), f"alerts[0].labels.team: {NUL_OR_SURROGATE}"),
        (label("summary", "x\udfff", where="annotations"), "alerts[0].annotations.summary"),
        (label("team", "t" * 1025), "alerts[0].labels.team: String should have at most 1024"),
        (label("model", "m" * 300), "alerts[0].labels.model: not a model name"),
        (label("model", "loan\x00default"), f"alerts[0].labels.model: {NUL_OR_SURROGATE}"),
        # A mixed group: the first alert is fine, the second is not. Nothing is stored.
        (second_alert("churn", team="\x00"), f"alerts[1].labels.team: {NUL_OR_SURROGATE}"),
        (second_alert("churn", team="t" * 2000), "alerts[1].labels.team: String should have"),
    ],
)
def test_a_bad_label_refuses_the_whole_body_with_422_on_either_database(
    any_registry: Registry, kit: SimpleNamespace, edit: Callable[[dict[str, Any]], None], error: str
) -> None:
    body = alertmanager(kit, edit)
    with kit.serve_receiver(any_registry) as http:
        for _ in range(2):  # resent (as a sender would): the same answer, never a 500
            answer = http.post("/alerts/alertmanager", content=body)
            assert answer.status_code == 422, answer.text
            assert error in answer.json()["error"]
    assert kit.inbox_rows(any_registry) == 0


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ({"model": "loan-default", "reason": "a\x00b"}, f"reason: {NUL_OR_SURROGATE}"),
        ({"model": "loan-default", "labels": {"k": "\udc00"}}, f"labels.k: {NUL_OR_SURROGATE}"),
        ({"model": "loan-default", "labels": {"k": "v" * 1025}}, "labels.k: String should"),
        ({"model": "../../../etc/passwd"}, "model: not a model name"),
        ({"model": "m" * 201}, "model: not a model name"),
    ],
)
def test_generic_alert_with_bad_text_is_422_on_either_database(
    any_registry: Registry, kit: SimpleNamespace, document: dict[str, Any], error: str
) -> None:
    with kit.serve_receiver(any_registry) as http:
        answer = http.post("/alerts/generic", content=json.dumps(document).encode())
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"].startswith(error)
    assert "passwd" not in answer.text and "mmmm" not in answer.text  # never echoed
    assert kit.inbox_rows(any_registry) == 0


def test_a_model_label_breaking_the_name_rule_is_reported_never_stored_or_echoed(
    any_registry: Registry, kit: SimpleNamespace
) -> None:
    body = alertmanager(kit, second_alert("../../../etc/passwd"), second_alert("M" * 300))
    with kit.serve_receiver(any_registry) as http:
        answer = http.post("/alerts/alertmanager", content=body)
    assert answer.status_code == 202, answer.text  # the valid alert must not be silenced
    reply = answer.json()
    assert [a["model"] for a in reply["alerts"]] == ["loan-default"]
    assert [bad["index"] for bad in reply["invalid_alerts"]] == [1, 2]
    assert reply["invalid_alerts"][0]["error"].startswith("alerts[1].labels.model: not a model")
    assert "passwd" not in answer.text and "MMMM" not in answer.text
    assert kit.inbox_rows(any_registry) == 1


def test_more_alerts_than_the_cap_is_413_before_any_is_validated(
    registry: Registry, kit: SimpleNamespace
) -> None:
    many = [{"status": "firing", "labels": {"model": "churn"}}] * (MAX_ALERTS + 1)
    body = alertmanager(kit, lambda document: document.update(alerts=many))
    with kit.serve_receiver(registry) as http:
        answer = http.post("/alerts/alertmanager", content=body)
    assert answer.status_code == 413
    assert f"set max_alerts: {MAX_ALERTS}" in answer.json()["error"]
    assert kit.inbox_rows(registry) == 0


def test_a_body_dripping_slowly_gets_408_and_the_connection_is_closed(
    registry: Registry, kit: SimpleNamespace
) -> None:
    with kit.serve_receiver(registry, body_timeout_s=0.5) as http:
        url = httpx.URL(str(http.base_url))
        with socket.create_connection((url.host, url.port or 80), timeout=10) as sock:
            head = (
                f"POST /alerts/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {kit.token}"
                "\r\nContent-Length: 100\r\n\r\n"
            )
            started = time.monotonic()
            sock.sendall(head.encode() + b'{"model": "lo')  # ... and the rest never comes
            answer = b""
            while chunk := sock.recv(4096):  # until the server closes the connection
                answer += chunk
            waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"body not received within 0.5 s" in answer
    assert 0.4 <= waited < 5.0
    assert kit.inbox_rows(registry) == 0


@pytest.mark.parametrize(
    "stamp", ["nan", "NaN", "inf", "-inf", "1e9", "-5", "1.5", "17000000000000000", "0x10"]
)
def test_a_signature_timestamp_that_is_not_whole_seconds_is_refused(
    registry: Registry, kit: SimpleNamespace, stamp: str
) -> None:
    body = kit.generic_body("loan-default")
    mac = hmac.new(kit.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: f"sha256={mac}"}
    with kit.serve_receiver(registry) as http:
        del http.headers["Authorization"]
        answer = http.post("/alerts/generic", content=body, headers=headers)
    assert answer.status_code == 400
    assert "whole unix seconds" in answer.json()["error"]
    assert kit.inbox_rows(registry) == 0


@contextmanager
def database_locked(registry: Registry) -> Iterator[None]:
    """Another connection holds the inbox's write lock until the block ends: SQLite's database
    lock (``BEGIN IMMEDIATE``) or, on PostgreSQL, an exclusive lock on the alerts table."""
    url = registry.catalog.engine.url
    if url.get_backend_name() == "sqlite":
        holder = sqlite3.connect(str(url.database), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.rollback()
            holder.close()
        return
    with registry.catalog.engine.connect() as conn:
        conn.execute(text("LOCK TABLE alerts IN ACCESS EXCLUSIVE MODE"))
        try:
            yield
        finally:
            conn.rollback()


def test_a_locked_database_gets_503_within_the_bound_while_healthz_answers(
    any_registry: Registry, kit: SimpleNamespace
) -> None:
    bound = 1.0
    body = kit.generic_body("loan-default", key="during-the-lock")
    with kit.serve_receiver(any_registry, store_timeout_s=bound) as http:
        with (
            database_locked(any_registry),
            ThreadPoolExecutor(1) as pool,
            httpx.Client(base_url=http.base_url) as probe,
        ):
            sent = time.monotonic()
            pending = pool.submit(http.post, "/alerts/generic", content=body)
            health = []
            while not pending.done():
                started = time.monotonic()
                assert probe.get("/healthz").status_code == 200
                health.append(time.monotonic() - started)
            answer = pending.result()
            waited = time.monotonic() - sent
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "1"
        assert bound <= waited < bound + 1.0
        assert len(health) >= 5 and max(health) < bound / 2
        retried = http.post("/alerts/generic", content=body)  # the sender retries: stored once
        assert retried.status_code == 202
    assert kit.inbox_rows(any_registry) == 1


def test_a_refused_value_in_a_shared_batch_never_fails_the_other_senders() -> None:
    """Requests queued behind a write share the next transaction; one the database refuses is
    written again alone, so only its own sender hears about it."""
    first_write_started, release = threading.Event(), threading.Event()
    transactions: list[list[str]] = []

    def write(items: Sequence[str]) -> list[str]:
        first_write_started.set()
        release.wait(10)  # the database is slow: later requests queue up behind this write
        transactions.append(list(items))
        if "refused" in items:
            raise ConfigError("the registry database refused a value")
        return [item.upper() for item in items]

    async def senders() -> list[Any]:
        writer: InboxWriter[str, str] = InboxWriter(write, timeout_s=10)
        first = asyncio.ensure_future(writer.store(["a"]))
        await asyncio.to_thread(first_write_started.wait, 10)
        queued = [asyncio.ensure_future(writer.store(i)) for i in (["b", "c"], ["refused"], ["d"])]
        await asyncio.sleep(0)  # all three queued before the first write ends
        release.set()
        return await asyncio.gather(first, *queued, return_exceptions=True)

    answers = asyncio.run(senders())
    assert answers[:2] == [["A"], ["B", "C"]] and answers[3] == ["D"]
    assert isinstance(answers[2], ConfigError)
    together, *alone = transactions[1:]
    assert together == ["b", "c", "refused", "d"]
    assert alone == [["b", "c"], ["refused"], ["d"]]
