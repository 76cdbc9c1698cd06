"""Release fixtures: a candidate that passed its gate against a champion, a model server on a
loopback port (on this registry or another), a URL nothing answers on, and what a user reads
afterwards (``retrain models history``, the model card)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.store import Registry
from retrain.config.settings import Settings
from retrain.config.wiring import build_registry
from retrain.local.demo_support import free_port
from retrain.testing_cli import run_cli
from retrain.testing_serving import register_test_bundle
from serving.app import create_app
from serving.limits import ServeLimits
from serving.runner import RunningServer
from tasks.data.simulator import simulate
from tasks.gate.evaluate import GateRules, evaluate_candidate

RELEASED_MODEL = "loans"
# The same weights as the champion grade equal on any holdout: the gate passes.
EQUAL_RULES = GateRules(floor=None, latency_p95_ms=None, max_regression=0.5)


@pytest.fixture
def gated(registry: Registry) -> int:
    """``loans`` v1 champion, v2 a candidate with v1's weights, graded against v1 (pass)."""
    register_test_bundle(registry, RELEASED_MODEL, seed=0, champion=True)
    candidate = register_test_bundle(registry, RELEASED_MODEL, seed=0, tag="retrain")
    holdout = simulate(400, seed=4)
    decision = evaluate_candidate(registry, RELEASED_MODEL, candidate, holdout, EQUAL_RULES)
    assert decision.passed, decision.reasons
    return candidate


@pytest.fixture
def model_server(start_app: Callable[[Any], RunningServer]) -> Callable[..., RunningServer]:
    """``start(registry, models, token=None)``: the real server app under uvicorn on a free
    loopback port, following ``registry`` every 50 ms (stopped after the test)."""

    def start(
        registry: Registry, models: list[str] | None = None, *, token: str | None = None
    ) -> RunningServer:
        app = create_app(
            registry,
            models or [RELEASED_MODEL],
            poll_interval_s=0.05,
            limits=ServeLimits(token=token),
        )
        return start_app(app)

    return start


@pytest.fixture
def dead_url() -> str:
    """A loopback URL on a port that nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def retrain_cli(home: Path) -> Callable[..., tuple[int, str]]:
    """``retrain_cli(*args)``: run ``retrain ARGS`` in process on the ``registry`` fixture's
    home, as a user would; (exit code, everything printed)."""
    return run_cli


@pytest.fixture
def model_card(registry: Registry) -> Callable[..., str]:
    """``model_card(version, model="loans")``: the newest stored model card of that version."""

    def read(version: int, model: str = RELEASED_MODEL) -> str:
        card = registry.catalog.latest_artifact("model_card", f"{model}-v{version}")
        assert card is not None, f"no model card for {model} v{version}"
        return registry.get_bytes(card.digest).decode()

    return read


@pytest.fixture
def trained(trained_home: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A fresh copy of the module's ``trained_home`` registry (its ``home``, ``versions`` and
    ``holdout``) for one test, open as ``registry``: what a test changes stays its own."""
    home = tmp_path / "home"
    shutil.copytree(trained_home["home"], home)
    registry = build_registry(Settings(home=home))
    try:
        yield {**trained_home, "registry": registry}
    finally:
        registry.close()
