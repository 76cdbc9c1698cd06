"""The model server as a caller sees it: protocol, errors, routing, reloads, rollback."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from registry.errors import StoreUnavailableError
from registry.release import acquire_release_lock, publish_weight
from registry.store import Registry
from serving.stats import FeedbackLog, StatsBook
from tasks.release.rollback import rollback

MODEL = "loans"


def _post(client: httpx.Client, body: Any, key: str | None = None) -> httpx.Response:
    headers = {"X-Request-Key": key} if key else {}
    return client.post(f"/v1/models/{MODEL}:predict", json=body, headers=headers)


def _set_canary(registry: Registry, version: int, weight: float, shadow: bool = False) -> None:
    # As a release would: hold the lock, else the server's start-up repair clears the canary.
    acquire_release_lock(registry.catalog, MODEL, version, ttl_s=60, actor="t")
    publish_weight(registry.catalog, MODEL, version, weight, shadow=shadow)
    registry.catalog.set_alias(MODEL, "canary", version, expected=None, reason="t", actor="t")


def _wait_for(check: Any, timeout_s: float = 2.0) -> float:
    started = time.perf_counter()
    while not check():
        assert time.perf_counter() - started < timeout_s, "condition not met in time"
        time.sleep(0.01)
    return time.perf_counter() - started


def test_predict_status_health_and_metrics(register: Any, serve: Any, rows: Any) -> None:
    register(champion=True)
    server = serve()
    with httpx.Client(base_url=server.url) as client:
        body = _post(client, {"instances": rows[0][:3]}).json()
        assert len(body["predictions"]) == 3
        assert all(0.0 <= p <= 1.0 for p in body["predictions"])
        assert body["model_version"] == 1 and body["variant"] == "champion"
        assert body["request_id"]
        status = client.get(f"/v1/models/{MODEL}").json()
        assert status["ready"] and status["champion"]["version"] == 1
        assert status["champion"]["weight"] == 100.0 and status["canary"] is None
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        text = client.get("/metrics").text
        line = next(x for x in text.splitlines() if x.startswith("retrain_predict_requests_total"))
        assert 'model="loans"' in line and 'version="1"' in line and 'variant="champion"' in line
        assert line.endswith(" 1.0")
        assert "retrain_predict_latency_seconds_bucket" in text
        assert "retrain_prediction_value_bucket" in text
        assert client.get("/v1/models/nope").status_code == 404


def test_malformed_requests_get_4xx_naming_the_field(register: Any, serve: Any, rows: Any) -> None:
    register(champion=True)
    server = serve()
    good = dict(rows[0][0])
    missing = {k: v for k, v in good.items() if k != "credit_score"}
    wrong_type = {**good, "annual_income": "lots"}
    with httpx.Client(base_url=server.url) as client:
        bad_json = client.post(f"/v1/models/{MODEL}:predict", content=b"{not json")
        assert bad_json.status_code == 400 and bad_json.json()["field"] == "body"
        no_instances = _post(client, {"rows": [good]})
        assert no_instances.status_code == 400 and no_instances.json()["field"] == "instances"
        not_object = _post(client, {"instances": [good, 5]})
        assert not_object.status_code == 422 and not_object.json()["field"] == "instances[1]"
        lacks = _post(client, {"instances": [missing]})
        assert lacks.status_code == 422 and lacks.json()["field"] == "credit_score"
        typed = _post(client, {"instances": [wrong_type]})
        assert typed.status_code == 422 and typed.json()["field"] == "annual_income"
        assert "annual_income" in typed.json()["error"]
        assert _post(client, {"instances": [good]}).status_code == 200  # still serving


def test_sticky_routing_keeps_each_caller_on_one_variant(
    registry: Registry, register: Any, serve: Any, rows: Any
) -> None:
    register(champion=True)
    canary = register(tag="retrain")
    _set_canary(registry, canary, 30.0)
    server = serve()
    seen: dict[str, set[str]] = {}
    with httpx.Client(base_url=server.url) as client:
        for _ in range(3):
            for user in range(150):
                body = _post(client, {"instances": [rows[0][user]]}, key=f"u{user}").json()
                seen.setdefault(f"u{user}", set()).add(body["variant"])
    assert all(len(variants) == 1 for variants in seen.values())
    share = sum("canary" in v for v in seen.values()) / len(seen)
    assert 0.15 < share < 0.45


def test_alias_reload_under_load_drops_no_request(
    registry: Registry, register: Any, serve: Any, rows: Any
) -> None:
    register(champion=True)
    register(tag="v2")
    server = serve()
    stop = threading.Event()
    statuses: Counter[int] = Counter()
    versions: Counter[int] = Counter()

    def hammer() -> None:
        with httpx.Client(base_url=server.url) as client:
            i = 0
            while not stop.is_set():
                response = _post(client, {"instances": [rows[0][i % 500]]})
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    versions[response.json()["model_version"]] += 1
                i += 1

    workers = [threading.Thread(target=hammer) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        current = 1
        for target in (2, 1, 2, 1, 2):
            registry.catalog.set_alias(
                MODEL, "champion", target, expected=current, reason="flip", actor="t"
            )
            current = target
            time.sleep(0.3)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert set(statuses) == {200}, statuses
    assert versions[1] > 0 and versions[2] > 0
    with httpx.Client(base_url=server.url) as client:
        assert _post(client, {"instances": [rows[0][0]]}).json()["model_version"] == 2


def test_a_broken_bundle_is_never_swapped_in(
    registry: Registry, register: Any, serve: Any, rows: Any
) -> None:
    register(champion=True)
    junk = registry.put_bytes(b'{"format": "not a bundle"}')
    broken = registry.catalog.register_model_version(MODEL, junk, metrics={}, lineage={}).version
    server = serve()
    registry.catalog.set_alias(MODEL, "champion", broken, expected=1, reason="t", actor="t")
    with httpx.Client(base_url=server.url) as client:
        _wait_for(lambda: str(broken) in client.get(f"/v1/models/{MODEL}").json()["load_errors"])
        for row in rows[0][:20]:
            assert _post(client, {"instances": [row]}).json()["model_version"] == 1
        status = client.get(f"/v1/models/{MODEL}").json()
        assert status["registry"]["champion"] == broken and status["champion"]["version"] == 1
        assert "retrain_bundle_load_failures_total" in client.get("/metrics").text


def test_rollback_needs_no_blob_store_and_lands_within_a_second(
    registry: Registry, register: Any, serve: Any, rows: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(champion=True)
    v2 = register(tag="v2")
    server = serve()
    registry.catalog.set_alias(MODEL, "champion", v2, expected=1, reason="release", actor="t")
    with httpx.Client(base_url=server.url) as client:
        _wait_for(lambda: _post(client, {"instances": [rows[0][0]]}).json()["model_version"] == 2)

        def unreachable(digest: str) -> bytes:
            raise StoreUnavailableError("blob store unreachable")

        monkeypatch.setattr(registry, "get_bytes", unreachable)
        result = rollback(registry, MODEL, reason="bad release", actor="t")
        assert (result.from_version, result.to_version) == (2, 1)
        took = _wait_for(
            lambda: all(
                _post(client, {"instances": [r]}).json()["model_version"] == 1 for r in rows[0][:10]
            ),
            timeout_s=1.0,
        )
        assert took < 1.0
    assert registry.catalog.get_model_version(MODEL, v2).status == "rejected"
    kinds = [e.kind for e in registry.catalog.events(MODEL)]
    assert "model.rolled_back" in kinds


def test_feedback_labels_reach_the_answering_version(register: Any, serve: Any, rows: Any) -> None:
    register(champion=True)
    server = serve()
    with httpx.Client(base_url=server.url) as client:
        ids = [_post(client, {"instances": [r]}).json()["request_id"] for r in rows[0][:5]]
        items = [{"request_id": rid, "labels": [1]} for rid in ids] + [
            {"request_id": "unknown", "labels": [0]}
        ]
        answer = client.post(f"/v1/models/{MODEL}:feedback", json={"feedback": items}).json()
        assert answer == {"accepted": 5, "unknown": 1}
        bad = client.post(f"/v1/models/{MODEL}:feedback", json={"feedback": [{"labels": [1]}]})
        assert bad.status_code == 422 and bad.json()["field"] == "request_id"
        stats = client.get(f"/v1/models/{MODEL}:stats").json()
        assert sum(s["feedback"]["count"] for s in stats["series"]) == 5


def test_feedback_log_forgets_the_oldest_answers_when_full() -> None:
    log = FeedbackLog(capacity=3)
    series = StatsBook().series(MODEL, 1, "champion")
    for i in range(5):
        log.remember(f"r{i}", series, [i / 10])
    assert len(log) == 3
    assert log.pop("r0") is None and log.pop("r1") is None  # late labels count as unknown
    assert log.pop("r2") == (series, [0.2]) and log.pop("r4") == (series, [0.4])
    assert log.pop("r2") is None  # labelled once, then forgotten


def test_shadow_mode_scores_the_canary_but_the_champion_answers(
    registry: Registry, register: Any, serve: Any, rows: Any
) -> None:
    register(champion=True)
    canary = register(tag="shadow")
    _set_canary(registry, canary, 100.0, shadow=True)
    server = serve()
    with httpx.Client(base_url=server.url) as client:
        variants = {_post(client, {"instances": [r]}).json()["variant"] for r in rows[0][:30]}
        assert variants == {"champion"}

        def shadow_series() -> list[dict[str, Any]]:
            stats = client.get(f"/v1/models/{MODEL}:stats").json()
            return [s for s in stats["series"] if s["variant"] == "shadow"]

        # Mirrored requests are scored after the answer: wait for all 30, then check there
        # are exactly 30 (one per request, none lost or doubled).
        _wait_for(lambda: sum(s["requests"] for s in shadow_series()) >= 30)
        shadow = shadow_series()
    assert len(shadow) == 1 and shadow[0]["version"] == canary and shadow[0]["requests"] == 30


def test_a_canary_whose_release_died_gets_no_traffic(
    registry: Registry, register: Any, serve: Any, rows: Any
) -> None:
    register(champion=True)
    canary = register(tag="release dies")
    acquire_release_lock(registry.catalog, MODEL, canary, ttl_s=0.6, actor="t")  # never renewed
    publish_weight(registry.catalog, MODEL, canary, 100.0)
    registry.catalog.set_alias(MODEL, "canary", canary, expected=None, reason="t", actor="t")
    server = serve()
    with httpx.Client(base_url=server.url) as client:
        assert _post(client, {"instances": [rows[0][0]]}).json()["variant"] == "canary"
        _wait_for(
            lambda: _post(client, {"instances": [rows[0][0]]}).json()["variant"] == "champion",
            timeout_s=1.5,
        )
    _wait_for(lambda: registry.catalog.get_alias(MODEL, "canary") is None, timeout_s=2.0)
    assert registry.catalog.get_alias(MODEL, "release-lock") is None
