"""Serving fixtures: real model bundles in the registry, the server in process on a manual
clock (``serve_manually``; ``limited`` with chosen ``ServeLimits``), a live server on a loopback
port (``serve``, realtime tests), and ``counters``: everything a request could move."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial
from typing import Any

import pytest

from registry.release import acquire_release_lock, publish_weight
from registry.store import Registry
from retrain.local.traffic import traffic_rows
from retrain.testing import ManualClock
from retrain.testing_serving import InProcessServer, register_test_bundle, serve_in_process
from serving.app import create_app
from serving.faults import FaultInjector
from serving.limits import ServeLimits
from serving.runner import RunningServer, start_server

with warnings.catch_warnings():  # Starlette prefers httpx2 for its test client; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

MODEL = "loans"


@pytest.fixture
def register(registry: Registry) -> Callable[..., int]:
    """Register a real bundle; same ``seed`` => same weights (a healthy retrain)."""
    return partial(register_test_bundle, registry, MODEL)


@pytest.fixture(scope="session")
def rows() -> tuple[list[dict[str, Any]], list[float]]:
    return traffic_rows(2000, seed=3)


@pytest.fixture
def faults() -> FaultInjector:
    return FaultInjector()


@pytest.fixture
def serve(registry: Registry, faults: FaultInjector) -> Iterator[Callable[..., RunningServer]]:
    """Start the real app under uvicorn on a free loopback port (stopped after the test)."""
    started: list[RunningServer] = []

    def start(models: list[str] | None = None, poll_interval_s: float = 0.05) -> RunningServer:
        app = create_app(
            registry, models or [MODEL], poll_interval_s=poll_interval_s, faults=faults
        )
        server = start_server(app)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def serve_manually(
    registry: Registry, faults: FaultInjector, clock: ManualClock
) -> Iterator[Callable[..., InProcessServer]]:
    """Start the real app in process on ``clock``; its follower polls only when told."""
    with ExitStack() as stack:

        def start(models: list[str] | None = None) -> InProcessServer:
            return stack.enter_context(
                serve_in_process(registry, models or [MODEL], clock=clock, faults=faults)
            )

        yield start


@pytest.fixture
def limited(
    registry: Registry, faults: FaultInjector, clock: ManualClock
) -> Iterator[Callable[..., TestClient]]:
    """Start the real app in process on ``clock`` with ``ServeLimits(**limits)``; its client
    (``client.app.state.server`` is the ``ModelServer``)."""
    with ExitStack() as stack:

        def start(**limits: Any) -> TestClient:
            served = serve_in_process(
                registry, [MODEL], clock=clock, faults=faults, limits=ServeLimits(**limits)
            )
            return stack.enter_context(served).client

        yield start


def _strict(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a JSON answer: {text[:200]}")

    return json.loads(text, parse_constant=refuse)


def _counters(client: TestClient, headers: dict[str, str] | None = None) -> Any:
    server = client.app.state.server  # type: ignore[attr-defined]
    stats = _strict(client.get(f"/v1/models/{MODEL}:stats", headers=headers).text)
    series = [line for line in client.get("/metrics").text.splitlines() if line[:1] != "#"]
    log = server.feedback_log
    return stats["series"], series, len(log), log.held, stats["client"]


@pytest.fixture
def counters() -> Callable[..., Any]:
    """``counters(client[, headers])``: the per-version stats (parsed as strict JSON), every
    Prometheus sample, the feedback log's size and what clients received (the stats' ``client``
    outcomes); equal before and after a refused request."""
    return _counters


@pytest.fixture
def set_canary(registry: Registry, clock: ManualClock) -> Callable[[int], None]:
    """``set_canary(version)``: a canary at 100%, as a live release holds it (lock on ``clock``,
    weight, alias); a server started before sees it at its next poll."""

    def put(version: int) -> None:
        catalog = registry.catalog
        acquire_release_lock(catalog, MODEL, version, ttl_s=600, actor="t", clock=clock.time)
        publish_weight(catalog, MODEL, version, 100.0, shadow=False)
        catalog.set_alias(MODEL, "canary", version, expected=None, reason="t", actor="t")

    return put
