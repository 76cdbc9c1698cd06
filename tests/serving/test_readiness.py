"""Readiness per model: a model without a champion (a newly registered spec) is listed by
``/readyz`` but does not fail it; ``/v1/models/<name>/ready`` answers for one model."""

from __future__ import annotations

from registry.store import Registry
from retrain.testing import ManualClock
from retrain.testing_serving import register_test_bundle, serve_in_process
from serving.limits import ServeLimits

OLD, NEW = "loans", "churn"


def test_a_model_without_a_champion_does_not_make_the_server_unready(
    registry: Registry, clock: ManualClock
) -> None:
    register_test_bundle(registry, OLD, champion=True)
    candidate = register_test_bundle(registry, NEW, seed=1)  # registered, no champion yet
    with serve_in_process(registry, [OLD, NEW], clock=clock) as served:
        client = served.client
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"ready": True, "models": [OLD], "no_champion": [NEW]}
        assert client.get(f"/v1/models/{OLD}/ready").json() == {
            "name": OLD,
            "ready": True,
            "version": 1,
        }
        waiting = client.get(f"/v1/models/{NEW}/ready")
        assert waiting.status_code == 503
        assert waiting.json()["ready"] is False and "no champion" in waiting.json()["reason"]

        registry.catalog.set_alias(NEW, "champion", candidate, expected=None, reason="t", actor="t")
        assert client.get(f"/v1/models/{NEW}/ready").status_code == 503  # until the next poll
        served.advance(0.2)
        now = client.get(f"/v1/models/{NEW}/ready")
        assert now.status_code == 200
        assert now.json() == {"name": NEW, "ready": True, "version": candidate}
        assert client.get("/readyz").json() == {
            "ready": True,
            "models": [OLD, NEW],
            "no_champion": [],
        }


def test_a_champion_that_does_not_load_fails_readiness_with_the_reason(
    registry: Registry, clock: ManualClock
) -> None:
    register_test_bundle(registry, OLD, champion=True)
    junk = registry.put_bytes(b'{"format": "not a bundle"}')
    broken = registry.catalog.register_model_version(NEW, junk, metrics={}, lineage={}).version
    registry.catalog.set_alias(NEW, "champion", broken, expected=None, reason="t", actor="t")
    with serve_in_process(registry, [OLD, NEW], clock=clock) as served:
        client = served.client
        refused = client.get("/readyz")
        assert refused.status_code == 503
        body = refused.json()
        assert body["ready"] is False and body["models"] == [OLD] and body["missing"] == [NEW]
        assert f"champion v{broken} is not loaded: " in body["reasons"][NEW]
        one = client.get(f"/v1/models/{NEW}/ready")
        assert one.status_code == 503 and one.json()["reason"] == body["reasons"][NEW]
        assert client.get(f"/v1/models/{OLD}/ready").status_code == 200


def test_an_unknown_model_is_404_and_readiness_stays_open_with_a_token(
    registry: Registry, clock: ManualClock
) -> None:
    register_test_bundle(registry, OLD, champion=True)
    limits = ServeLimits(token="s3cret")
    with serve_in_process(registry, [OLD], clock=clock, limits=limits) as served:
        client = served.client
        assert client.get("/v1/models/nope/ready").status_code == 404
        assert client.get(f"/v1/models/{OLD}/ready").status_code == 200  # no token needed
        assert client.get("/readyz").status_code == 200
        assert client.post(f"/v1/models/{OLD}/ready").status_code == 405
        assert client.get(f"/v1/models/{OLD}").status_code == 401  # status still guarded
