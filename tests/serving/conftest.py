"""Serving fixtures: real model bundles in the registry, the server in process on a manual
clock (``serve_manually``), and a live server on a loopback port (``serve``, realtime tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial
from typing import Any

import pytest

from registry.store import Registry
from retrain.local.traffic import traffic_rows
from retrain.testing import ManualClock
from retrain.testing_serving import InProcessServer, register_test_bundle, serve_in_process
from serving.app import create_app
from serving.faults import FaultInjector
from serving.runner import RunningServer, start_server

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
