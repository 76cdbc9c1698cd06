"""Metrics that tell the truth: what clients received, apart from what each version did, and no
series left behind by versions the server no longer serves.

A canary that fails and is answered for by the champion is one ``fallback`` for its caller (a
200), one error of the canary version and one request of the champion; a 5xx is one client
``error``; a refused request moves nothing. A version out of use keeps its series for the grace
period (``ServeLimits.retired_series_grace_s``), then they leave ``/metrics`` and the stats.

The real app runs in process on a manual clock (``serve_manually``, ``limited``: ``conftest``),
with real bundles and faults injected into the real predict path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from registry.errors import ConfigError
from registry.release import acquire_release_lock, clear_canary, publish_weight
from registry.store import Registry
from retrain.cli.serve_cmds import serve_limits
from retrain.config.settings import Settings
from retrain.testing import ManualClock
from retrain.testing_serving import InProcessServer, register_test_bundle
from serving.faults import FaultInjector, FaultSpec
from serving.limits import ServeLimits

MODEL = "loans"
PREDICT = f"/v1/models/{MODEL}:predict"
STATS = f"/v1/models/{MODEL}:stats"
GRACE_S = ServeLimits().retired_series_grace_s
Rows = tuple[list[dict[str, Any]], list[float]]
Serve = Callable[..., InProcessServer]
PER_VERSION = (
    "retrain_predict_requests_total",
    "retrain_predict_errors_total",
    "retrain_predict_latency_seconds_bucket",
    "retrain_prediction_value_count",
    "retrain_feedback_labels_total",
    "retrain_feedback_squared_error_total",
    "retrain_feedback_correct_total",
)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient) -> Samples:
    """Every sample of ``GET /metrics``, parsed as Prometheus parses it."""
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: object) -> float | None:
    """The sample ``name{labels}``, None when the series is not exposed."""
    return samples.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))))


def outcomes(samples: Samples, model: str = MODEL) -> dict[str, float | None]:
    return {
        o: value(samples, "retrain_client_requests_total", model=model, outcome=o)
        for o in ("ok", "fallback", "error")
    }


def versions(samples: Samples, name: str) -> set[int]:
    """Versions of MODEL with a ``name`` series."""
    found = set()
    for sample_name, labels in samples:
        by = dict(labels)
        if sample_name == name and by.get("model") == MODEL:
            found.add(int(by["version"]))
    return found


def routed(samples: Samples) -> dict[tuple[int, str], float]:
    """``retrain_route_weight`` of MODEL: (version, variant) -> percent."""
    return {
        (int(dict(labels)["version"]), dict(labels)["variant"]): v
        for (name, labels), v in samples.items()
        if name == "retrain_route_weight" and dict(labels)["model"] == MODEL
    }


def post(client: TestClient, rows: Rows, n: int = 1) -> list[int]:
    """Status codes of ``n`` one-instance predict requests."""
    return [client.post(PREDICT, json={"instances": [rows[0][i]]}).status_code for i in range(n)]


def promote(registry: Registry, old: int, new: int) -> None:
    """What a finished release does: the champion alias moves, the canary alias goes."""
    registry.catalog.set_alias(MODEL, "champion", new, expected=old, reason="t", actor="t")
    clear_canary(registry.catalog, MODEL, reason="promoted", actor="t")


# -- what clients received ----------------------------------------------------------------------
def test_a_canary_failure_the_champion_answers_is_one_fallback_not_an_error(
    register: Any, set_canary: Any, serve_manually: Serve, faults: FaultInjector, rows: Rows
) -> None:
    champion = register(champion=True)
    canary = register(seed=1, tag="crashes")
    set_canary(canary)  # 100% of traffic routed to the canary
    faults.set(MODEL, canary, FaultSpec(crash=True))
    client = serve_manually().client
    before = scrape(client)
    assert outcomes(before) == {"ok": 0, "fallback": 0, "error": 0}  # exposed from zero

    answer = client.post(PREDICT, json={"instances": [rows[0][0]]})
    assert answer.status_code == 200
    assert (answer.json()["model_version"], answer.json()["variant"]) == (champion, "champion")
    after = scrape(client)
    assert outcomes(after) == {"ok": 0, "fallback": 1, "error": 0}
    requests, errors = "retrain_predict_requests_total", "retrain_predict_errors_total"
    assert value(after, errors, model=MODEL, version=canary, variant="canary") == 1
    assert value(after, requests, model=MODEL, version=canary, variant="canary") == 1
    assert value(after, requests, model=MODEL, version=champion, variant="champion") == 1
    assert value(after, errors, model=MODEL, version=champion, variant="champion") == 0
    assert value(after, "retrain_client_latency_seconds_count", model=MODEL) == 1

    faults.clear()  # the canary answers for itself again
    assert post(client, rows, 3) == [200, 200, 200]
    client_view = client.get(STATS).json()["client"]
    assert client_view["requests"] == {"ok": 3, "fallback": 1, "error": 0}
    assert sum(client_view["latency"]["counts"]) == 4  # ok + fallback == the 200s sent
    assert outcomes(scrape(client)) == {"ok": 3, "fallback": 1, "error": 0}


def test_when_canary_and_champion_both_fail_the_client_error_is_counted_once(
    register: Any, set_canary: Any, serve_manually: Serve, faults: FaultInjector, rows: Rows
) -> None:
    champion = register(champion=True)
    canary = register(seed=1)
    set_canary(canary)
    faults.set(MODEL, canary, FaultSpec(crash=True))
    faults.set(MODEL, champion, FaultSpec(crash=True))
    client = serve_manually().client
    assert post(client, rows, 2) == [500, 500]
    after = scrape(client)
    assert outcomes(after) == {"ok": 0, "fallback": 0, "error": 2}
    errors = "retrain_predict_errors_total"
    assert value(after, errors, model=MODEL, version=canary, variant="canary") == 2
    assert value(after, errors, model=MODEL, version=champion, variant="champion") == 2
    assert client.get(STATS).json()["client"]["requests"]["error"] == 2


def test_a_model_without_a_champion_loaded_is_a_client_error(
    registry: Registry, register: Any, serve_manually: Serve, rows: Rows
) -> None:
    register(champion=True)
    register_test_bundle(registry, "fresh")  # registered, never released
    client = serve_manually([MODEL, "fresh"]).client
    refused = client.post("/v1/models/fresh:predict", json={"instances": [rows[0][0]]})
    assert refused.status_code == 503 and "no champion" in refused.json()["error"]
    samples = scrape(client)
    assert outcomes(samples, "fresh") == {"ok": 0, "fallback": 0, "error": 1}
    assert outcomes(samples) == {"ok": 0, "fallback": 0, "error": 0}


def test_refused_requests_move_no_counter_at_all(
    register: Any, limited: Callable[..., TestClient], counters: Any, rows: Rows
) -> None:
    register(champion=True)
    client = limited(token="s3cret", auth_predict=True, max_instances=2)
    auth = {"Authorization": "Bearer s3cret"}
    before, samples = counters(client, auth), scrape(client)
    refused = [
        client.post(PREDICT, json={"instances": [rows[0][0]]}),  # no credentials
        client.post(PREDICT, content=b"{not json", headers=auth),
        client.post(PREDICT, json={"instances": rows[0][:3]}, headers=auth),  # over the limit
        client.post(PREDICT, json={"instances": [{"income": "NaN"}]}, headers=auth),
        client.post(PREDICT, content=b'{"instances": [{"income": NaN}]}', headers=auth),
        client.post("/v1/models/nobody:predict", json={"instances": [{}]}, headers=auth),
    ]
    assert all(400 <= r.status_code < 500 for r in refused), [r.status_code for r in refused]
    assert counters(client, auth) == before and scrape(client) == samples
    answered = client.post(PREDICT, json={"instances": [rows[0][0]]}, headers=auth)
    assert answered.status_code == 200
    assert outcomes(scrape(client)) == {"ok": 1, "fallback": 0, "error": 0}


# -- versions no longer served -------------------------------------------------------------------
def test_a_retired_version_keeps_its_series_for_the_grace_period_then_they_go(
    registry: Registry, register: Any, set_canary: Any, serve_manually: Serve, rows: Rows
) -> None:
    old = register(champion=True)
    new = register(seed=1)
    served = serve_manually()
    client = served.client
    assert post(client, rows, 3) == [200] * 3  # the old champion's traffic
    set_canary(new)
    served.poll()
    assert post(client, rows, 2) == [200] * 2  # the canary's
    promote(registry, old, new)
    served.poll()
    assert post(client, rows, 1) == [200]

    within = scrape(client)
    requests = "retrain_predict_requests_total"
    assert versions(within, requests) == {old, new}  # the last windows can still be read
    assert value(within, requests, model=MODEL, version=old, variant="champion") == 3
    assert routed(within) == {(new, "champion"): 100.0}  # weights: only what is served
    served.advance(GRACE_S - 1)
    assert value(scrape(client), requests, model=MODEL, version=old, variant="champion") == 3

    served.advance(2)
    after = scrape(client)
    for family in PER_VERSION:
        assert versions(after, family) == {new}, family
    assert routed(after) == {(new, "champion"): 100.0}
    # The new champion keeps the series it earned as a canary: it is still served.
    assert value(after, requests, model=MODEL, version=new, variant="canary") == 2
    assert {s["version"] for s in client.get(STATS).json()["series"]} == {new}
    assert outcomes(after) == {"ok": 6, "fallback": 0, "error": 0}  # per model: never dropped


def test_a_version_rolled_back_to_keeps_its_counters_within_grace_and_restarts_after(
    registry: Registry, register: Any, serve_manually: Serve, rows: Rows
) -> None:
    first = register(champion=True)
    second = register(seed=1)
    served = serve_manually()
    client = served.client
    requests = "retrain_predict_requests_total"
    assert post(client, rows, 4) == [200] * 4
    promote(registry, first, second)
    served.advance(GRACE_S / 2)
    promote(registry, second, first)  # a rollback before the grace ends
    served.poll()
    assert post(client, rows, 1) == [200]
    samples = scrape(client)
    assert value(samples, requests, model=MODEL, version=first, variant="champion") == 5
    assert routed(samples) == {(first, "champion"): 100.0}

    promote(registry, first, second)  # forward again, and far past the grace
    served.poll()
    served.advance(GRACE_S + 1)
    assert versions(scrape(client), requests) == set()  # second: no traffic yet; first: gone
    promote(registry, second, first)  # back again: a new series, from zero
    served.poll()
    assert post(client, rows, 1) == [200]
    assert value(scrape(client), requests, model=MODEL, version=first, variant="champion") == 1


def test_an_aborted_canary_that_never_loaded_leaves_no_load_failure_series(
    registry: Registry, register: Any, serve_manually: Serve, clock: ManualClock
) -> None:
    register(champion=True)
    junk = registry.put_bytes(b'{"format": "not a bundle"}')
    broken = registry.catalog.register_model_version(MODEL, junk, metrics={}, lineage={}).version
    catalog = registry.catalog  # a release that holds its lease for longer than two graces
    acquire_release_lock(catalog, MODEL, broken, ttl_s=GRACE_S * 10, actor="t", clock=clock.time)
    publish_weight(catalog, MODEL, broken, 10.0)
    catalog.set_alias(MODEL, "canary", broken, expected=None, reason="t", actor="t")
    served = serve_manually()
    failures = "retrain_bundle_load_failures_total"
    assert value(scrape(served.client), failures, model=MODEL, version=broken) == 1
    served.advance(GRACE_S * 2)  # still aimed at: the failure stays in sight
    assert value(scrape(served.client), failures, model=MODEL, version=broken) is not None
    clear_canary(registry.catalog, MODEL, reason="aborted", actor="t")
    served.poll()
    assert value(scrape(served.client), failures, model=MODEL, version=broken) is not None
    served.advance(GRACE_S + 1)
    assert value(scrape(served.client), failures, model=MODEL, version=broken) is None


def test_the_grace_period_is_a_server_setting(
    registry: Registry,
    register: Any,
    limited: Callable[..., TestClient],
    clock: ManualClock,
    rows: Rows,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    monkeypatch.setenv("RETRAIN_SERVE_RETIRED_SERIES_GRACE_S", "30")
    assert serve_limits(Settings(home=tmp_path)).retired_series_grace_s == 30.0
    with pytest.raises(ConfigError, match="serve_retired_series_grace_s"):
        ServeLimits(retired_series_grace_s=-1.0)

    old = register(champion=True)
    new = register(seed=1)
    client = limited(retired_series_grace_s=30.0)
    server = client.app.state.server  # type: ignore[attr-defined]
    assert post(client, rows, 1) == [200]
    promote(registry, old, new)
    server.follower.poll_once()
    clock.advance(31)
    assert versions(scrape(client), "retrain_predict_requests_total") == set()
