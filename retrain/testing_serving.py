"""The model server in process, for tests: ``serve_in_process`` runs the app over in-process
HTTP with its alias follower polled by hand; ``register_test_bundle`` registers small real
bundles in seconds (no training run)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from retrain.testing import ManualClock

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from models.preprocessing import Preprocessor
    from registry.store import Registry
    from serving.faults import FaultInjector
    from serving.follower import AliasFollower
    from serving.limits import ServeLimits
    from serving.server import ModelServer


__all__ = ["InProcessServer", "register_test_bundle", "sample_preprocessor", "serve_in_process"]


# -- the model server in process -----------------------------------------------------------------
@dataclass
class InProcessServer:
    """The model server app behind an in-process HTTP client; nothing polls unless told."""

    client: TestClient
    server: ModelServer
    clock: ManualClock

    @property
    def follower(self) -> AliasFollower:
        """The server's alias follower."""
        return self.server.follower

    def poll(self) -> None:
        """One poll of the registry, as the background thread would do every interval."""
        self.follower.poll_once()

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on the manual clock, then poll."""
        self.clock.advance(seconds)
        self.poll()


@contextmanager
def serve_in_process(
    registry: Registry,
    models: list[str] | None = None,
    *,
    clock: ManualClock | None = None,
    faults: FaultInjector | None = None,
    limits: ServeLimits | None = None,
) -> Iterator[InProcessServer]:
    """``serving.app.create_app`` on ``clock`` (a fresh ``ManualClock`` by default), started
    (start-up repair, first poll, previous champions warmed) with no polling thread; requests go
    through Starlette's in-process test client, background tasks finished before it returns.
    ``limits`` are the server's request limits and credentials (``ServeLimits()`` by default)."""
    from serving.app import create_app

    with warnings.catch_warnings():  # Starlette prefers httpx2 for its test client; httpx works
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    clock = clock or ManualClock()
    app = create_app(
        registry,
        models,
        faults=faults,
        clock=clock.time,
        monotonic=clock.monotonic,
        poll_in_background=False,
        limits=limits,
    )
    with TestClient(app, base_url="http://model-server") as client:
        yield InProcessServer(client, app.state.server, clock)


# -- bundles -------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def sample_preprocessor() -> Preprocessor:
    """Preprocessing statistics of 2,000 simulated loan applications (computed once)."""
    from models.preprocessing import Preprocessor
    from tasks.data.simulator import FEATURES_CATEGORICAL, FEATURES_NUMERIC, simulate

    frame = simulate(2000, seed=1)
    return Preprocessor.fit(frame, FEATURES_NUMERIC, FEATURES_CATEGORICAL, max_categories=20)


def register_test_bundle(
    registry: Registry,
    model: str = "loans",
    *,
    seed: int = 0,
    tag: str = "",
    champion: bool = False,
) -> int:
    """Store a small real bundle, register it as the next version of ``model``; its number.

    The bundle is genuine (safetensors + manifest, loaded through ``models.bundle``), built from
    an untrained network with a fixed seed, so no training run is needed. The same ``seed``
    gives the same weights: a "healthy retrain" whose predictions match the champion's.
    ``champion=True`` also points the champion alias at it (compare-and-swap on the current).
    """
    import torch

    from models.bundle import encode_bundle, save_bundle
    from models.modules import TabularMLP

    pre = sample_preprocessor()
    torch.manual_seed(seed)
    net = TabularMLP(len(pre.numeric), pre.cardinalities, [4] * len(pre.categorical), [16])
    encoded = encode_bundle(
        net,
        architecture=net.architecture,
        preprocessor=pre,
        task="binary",
        target="default",
        metrics={},
        lineage={"seed": seed, "tag": tag},
    )
    digest = save_bundle(registry.put_bytes, encoded)
    version = registry.catalog.register_model_version(
        model, digest, metrics={}, lineage={"seed": seed, "tag": tag}, reason="test bundle"
    ).version
    if champion:
        current = registry.catalog.get_alias(model, "champion")
        registry.catalog.set_alias(
            model, "champion", version, expected=current, reason="test bundle", actor="test"
        )
    return version
