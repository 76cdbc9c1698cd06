"""The model server as a caller sees it: protocol, errors, routing, reloads, rollback.

Most tests run the real app in process (``serve_manually``): requests through an in-process
HTTP client, the alias follower polled by hand on a ``ManualClock``, so a reload or a lease
expiry happens exactly when the test says. The ``realtime`` tests run the server on a loopback
port with its real polling thread.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.catalog import Catalog
from registry.errors import StoreUnavailableError
from registry.release import acquire_release_lock, publish_weight
from registry.store import Registry
from retrain.testing import ManualClock
from retrain.testing_blobs import InMemoryBlobStore
from retrain.testing_serving import InProcessServer, register_test_bundle, serve_in_process
from serving.faults import FaultInjector, FaultSpec
from serving.feedback import FeedbackLog
from serving.stats import StatsBook
from tasks.release.metric_sources import MetricsSnapshot
from tasks.release.rollback import rollback

MODEL = "loans"
Rows = tuple[list[dict[str, Any]], list[float]]
Serve = Callable[..., InProcessServer]


def _post(client: httpx.Client, body: Any, key: str | None = None) -> httpx.Response:
    headers = {"X-Request-Key": key} if key else {}
    return client.post(f"/v1/models/{MODEL}:predict", json=body, headers=headers)


def _set_canary(
    registry: Registry,
    version: int,
    weight: float,
    shadow: bool = False,
    *,
    ttl_s: float = 60,
    clock: ManualClock | None = None,
) -> None:
    # As a release would: hold the lock, else the server's start-up repair clears the canary.
    acquire_release_lock(
        registry.catalog,
        MODEL,
        version,
        ttl_s=ttl_s,
        actor="t",
        clock=clock.time if clock is not None else time.time,
    )
    publish_weight(registry.catalog, MODEL, version, weight, shadow=shadow)
    registry.catalog.set_alias(MODEL, "canary", version, expected=None, reason="t", actor="t")


def _wait_for(check: Any, timeout_s: float = 2.0) -> float:
    started = time.perf_counter()
    while not check():
        assert time.perf_counter() - started < timeout_s, "condition not met in time"
        time.sleep(0.01)
    return time.perf_counter() - started


# -- in process, on a manual clock ---------------------------------------------------------------
def test_malformed_requests_get_4xx_naming_the_field(
    register: Any, serve_manually: Serve, rows: Rows
) -> None:
    register(champion=True)
    client = serve_manually().client
    good = dict(rows[0][0])
    missing = {k: v for k, v in good.items() if k != "credit_score"}
    wrong_type = {**good, "annual_income": "lots"}
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
    registry: Registry, register: Any, serve_manually: Serve, rows: Rows
) -> None:
    register(champion=True)
    canary = register(tag="retrain")
    _set_canary(registry, canary, 30.0)
    client = serve_manually().client
    seen: dict[str, set[str]] = {}
    for _ in range(3):
        for user in range(150):
            body = _post(client, {"instances": [rows[0][user]]}, key=f"u{user}").json()
            seen.setdefault(f"u{user}", set()).add(body["variant"])
    assert all(len(variants) == 1 for variants in seen.values())
    share = sum("canary" in v for v in seen.values()) / len(seen)
    assert 0.15 < share < 0.45


def test_a_broken_bundle_is_never_swapped_in(
    registry: Registry, register: Any, serve_manually: Serve, rows: Rows
) -> None:
    register(champion=True)
    junk = registry.put_bytes(b'{"format": "not a bundle"}')
    broken = registry.catalog.register_model_version(MODEL, junk, metrics={}, lineage={}).version
    served = serve_manually()
    client = served.client
    registry.catalog.set_alias(MODEL, "champion", broken, expected=1, reason="t", actor="t")
    served.poll()
    assert str(broken) in client.get(f"/v1/models/{MODEL}").json()["load_errors"]
    for row in rows[0][:20]:
        assert _post(client, {"instances": [row]}).json()["model_version"] == 1
    status = client.get(f"/v1/models/{MODEL}").json()
    assert status["registry"]["champion"] == broken and status["champion"]["version"] == 1
    assert "retrain_bundle_load_failures_total" in client.get("/metrics").text
    # A failed version is retried only every retry_failed_s (5 s), however often polled.
    key = (MODEL, broken)
    assert served.follower.load_failures[key] == 1
    served.advance(4.9)
    assert served.follower.load_failures[key] == 1
    served.advance(0.1)
    assert served.follower.load_failures[key] == 2


def test_rollback_needs_no_blob_store(tmp_path: Path, clock: ManualClock, rows: Rows) -> None:
    blobs = InMemoryBlobStore()
    with Registry(blobs, Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")) as registry:
        register_test_bundle(registry, MODEL, champion=True)
        v2 = register_test_bundle(registry, MODEL, tag="v2")
        with serve_in_process(registry, [MODEL], clock=clock) as served:
            client = served.client
            registry.catalog.set_alias(MODEL, "champion", v2, expected=1, reason="r", actor="t")
            served.poll()
            assert _post(client, {"instances": [rows[0][0]]}).json()["model_version"] == 2
            blobs.available = False  # from here on every blob read fails
            with pytest.raises(StoreUnavailableError):
                registry.get_bytes(registry.catalog.get_model_version(MODEL, 1).bundle_digest)
            result = rollback(registry, MODEL, reason="bad release", actor="t")
            assert (result.from_version, result.to_version) == (2, 1)
            served.poll()  # the very next poll serves v1 again, from memory
            for row in rows[0][:10]:
                assert _post(client, {"instances": [row]}).json()["model_version"] == 1
            assert client.get(f"/v1/models/{MODEL}").json()["load_errors"] == {}
        assert registry.catalog.get_model_version(MODEL, v2).status == "rejected"
        kinds = [e.kind for e in registry.catalog.events(MODEL)]
        assert "model.rolled_back" in kinds


def test_feedback_labels_reach_the_answering_version(
    register: Any, serve_manually: Serve, rows: Rows
) -> None:
    register(champion=True)
    client = serve_manually().client
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
    r2, r4 = log.pop("r2"), log.pop("r4")
    assert r2 is not None and (r2.series, list(r2.predictions)) == (series, [0.2])
    assert r4 is not None and list(r4.predictions) == [0.4]
    assert log.pop("r2") is None  # labelled once, then forgotten


def test_feedback_log_holds_a_bounded_number_of_predictions() -> None:
    log = FeedbackLog(capacity=100, max_predictions=10)
    series = StatsBook().series(MODEL, 1, "champion")
    log.remember("a", series, [0.1] * 4)
    log.remember("b", series, [0.2] * 4)
    log.remember("c", series, [0.3] * 4)  # 12 > 10: the oldest answer makes room
    assert "a" not in log and "b" in log and "c" in log and log.held == 8
    log.remember("huge", series, [0.5] * 11)  # larger than the whole log: not kept at all
    assert "huge" not in log and log.held == 8


def test_shadow_mode_scores_the_canary_but_the_champion_answers(
    registry: Registry, register: Any, serve_manually: Serve, rows: Rows
) -> None:
    register(champion=True)
    canary = register(tag="shadow")
    _set_canary(registry, canary, 100.0, shadow=True)
    client = serve_manually().client
    variants = {_post(client, {"instances": [r]}).json()["variant"] for r in rows[0][:30]}
    assert variants == {"champion"}
    # Mirrored requests are scored after the answer, within the request's lifetime: exactly
    # one per request, none lost or doubled.
    stats = client.get(f"/v1/models/{MODEL}:stats").json()
    shadow = [s for s in stats["series"] if s["variant"] == "shadow"]
    assert len(shadow) == 1 and shadow[0]["version"] == canary and shadow[0]["requests"] == 30


def test_labels_score_the_shadow_too_so_its_online_metric_can_be_judged(
    registry: Registry, register: Any, serve_manually: Serve, rows: Rows
) -> None:
    register(champion=True)
    canary = register(seed=7, tag="shadow")
    _set_canary(registry, canary, 100.0, shadow=True)
    client = serve_manually().client
    ids = [_post(client, {"instances": [r]}).json()["request_id"] for r in rows[0][:20]]
    labels = {
        "feedback": [{"request_id": i, "labels": [y]} for i, y in zip(ids, rows[1], strict=False)]
    }
    assert client.post(f"/v1/models/{MODEL}:feedback", json=labels).json()["accepted"] == 20
    counted = MetricsSnapshot.from_server_stats(client.get(f"/v1/models/{MODEL}:stats").json())
    champion, shadow = counted.get(1), counted.get(canary)
    assert champion.feedback_count == shadow.feedback_count == 20
    assert shadow.online_loss() != champion.online_loss()  # its own predictions, not a copy
    again = client.post(f"/v1/models/{MODEL}:feedback", json=labels).json()
    assert again["accepted"] == 0  # labelled once: nothing counts twice


@pytest.mark.parametrize(
    ("fault", "failed"),
    [(FaultSpec(crash=True), 40), (FaultSpec(error_rate=0.05), 2)],
    ids=["crash-on-predict", "5pct-errors"],
)
def test_a_failing_canary_is_counted_but_the_champion_answers_for_it(
    registry: Registry,
    register: Any,
    serve_manually: Serve,
    faults: FaultInjector,
    rows: Rows,
    fault: FaultSpec,
    failed: int,
) -> None:
    register(champion=True)
    canary = register(tag="faulty")
    _set_canary(registry, canary, 100.0)
    faults.set(MODEL, canary, fault)
    client = serve_manually().client
    answers = [_post(client, {"instances": [r]}) for r in rows[0][:40]]
    assert {a.status_code for a in answers} == {200}  # no caller sees the canary fail
    assert Counter(a.json()["variant"] for a in answers) == Counter(
        {"champion": failed, "canary": 40 - failed}
    )
    counted = MetricsSnapshot.from_server_stats(client.get(f"/v1/models/{MODEL}:stats").json())
    assert (counted.get(canary).requests, counted.get(canary).errors) == (40, failed)


def test_shifted_canary_predictions_reach_callers_and_its_histogram(
    registry: Registry, register: Any, serve_manually: Serve, faults: FaultInjector, rows: Rows
) -> None:
    register(champion=True)
    canary = register(tag="shifted")  # same weights as the champion, then shifted by 0.25
    _set_canary(registry, canary, 100.0)
    client = serve_manually().client
    batch = {"instances": rows[0][:20]}
    plain = _post(client, batch).json()["predictions"]
    faults.set(MODEL, canary, FaultSpec(prediction_shift=0.25))
    shifted = _post(client, batch).json()["predictions"]
    assert shifted == pytest.approx([p + 0.25 for p in plain])
    counted = MetricsSnapshot.from_server_stats(client.get(f"/v1/models/{MODEL}:stats").json())
    assert sum(counted.get(canary).prediction_counts) == 40


def test_a_canary_whose_release_died_gets_no_traffic(
    registry: Registry, register: Any, serve_manually: Serve, clock: ManualClock, rows: Rows
) -> None:
    register(champion=True)
    canary = register(tag="release dies")
    _set_canary(registry, canary, 100.0, ttl_s=0.6, clock=clock)  # the lease is never renewed
    served = serve_manually()
    client = served.client
    assert _post(client, {"instances": [rows[0][0]]}).json()["variant"] == "canary"
    served.advance(0.5)  # the lease has 0.1 s left
    assert _post(client, {"instances": [rows[0][0]]}).json()["variant"] == "canary"
    served.advance(0.5)  # expired: the very next poll routes nothing to the canary
    assert _post(client, {"instances": [rows[0][0]]}).json()["variant"] == "champion"
    assert registry.catalog.get_alias(MODEL, "canary") is None  # and the server repaired it
    assert registry.catalog.get_alias(MODEL, "release-lock") is None


# -- on a loopback port, with the real polling thread (real time) --------------------------------
@pytest.mark.realtime
def test_predict_status_health_and_metrics(register: Any, serve: Any, rows: Rows) -> None:
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


@pytest.mark.realtime
def test_alias_reload_under_load_drops_no_request(
    registry: Registry, register: Any, serve: Any, rows: Rows
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


@pytest.mark.realtime
def test_rollback_needs_no_blob_store_and_lands_within_a_second(
    registry: Registry, register: Any, serve: Any, rows: Rows, monkeypatch: pytest.MonkeyPatch
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
