"""Serving fixtures: real model bundles in the registry and a live server on a loopback port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

from registry.store import Registry
from retrain.local.traffic import traffic_rows
from retrain.testing import register_test_bundle
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
