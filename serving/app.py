"""The model server: a lean Starlette app speaking the KServe v1 protocol.

- ``POST /v1/models/<name>:predict``: ``{"instances": [...]}`` -> predictions, version, variant
- ``POST /v1/models/<name>:explain``: the same body -> per-feature attributions by the version
  ``:predict`` would pick (``serving.explain``); counted apart from predictions
- ``POST /v1/models/<name>:feedback``: delayed labels by request id (online metrics)
- ``GET /v1/models/<name>:stats``: cumulative per-version counters, the canary analysis source
  (``?recent=1`` adds exact recent latency percentiles; ``POST :reset-latency`` clears them)
- ``GET /v1/models/<name>``: versions, weights, health; ``GET /v1/models``: every model
- ``GET /v1/models/<name>/ready``: 200 once its champion is loaded, 503 (with why) until then
- ``GET /metrics``: Prometheus text (``serving.metrics`` lists the series)
- ``GET /healthz``, ``GET /readyz`` (every model that has a champion has it loaded; models
  without one are listed under ``no_champion``, not failed)

``limits`` (``serving.limits.ServeLimits``) caps bodies, batches and request ids, and with a
token set requires ``Authorization: Bearer <token>`` on everything under ``/v1/models`` but
``:predict`` and ``:explain`` (those too with ``auth_predict``); health, readiness
(``/readyz`` and ``/v1/models/<name>/ready``) and metrics stay open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HttpRoute

from registry.errors import InvalidRequestError
from registry.release import repair_releases
from serving.faults import FaultInjector
from serving.follower import AliasFollower
from serving.limits import ServeLimits
from serving.metrics import CONTENT_TYPE
from serving.responses import json_response, problem, refusal
from serving.server import ModelServer

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(
    registry: Registry,
    models: list[str] | None = None,
    *,
    poll_interval_s: float = 0.2,
    faults: FaultInjector | None = None,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    poll_in_background: bool = True,
    limits: ServeLimits | None = None,
) -> Starlette:
    """The ASGI app serving ``models`` (every model in the catalog when empty).

    On start-up it repairs half-finished releases, loads each champion and canary,
    then follows the registry every ``poll_interval_s`` seconds in a background thread.
    ``app.state.server`` is the ``ModelServer`` (faults, stats) for tests and benchmarks.
    ``clock``/``monotonic`` are the follower's clocks (lease expiry, retry pacing); with
    ``poll_in_background=False`` nothing polls after start-up until someone calls
    ``app.state.server.follower.poll_once()`` (``retrain.testing.serve_in_process`` does).
    ``limits`` are the request limits and credentials (``ServeLimits()`` defaults when None).
    """
    follower = AliasFollower(
        registry, models, poll_interval_s=poll_interval_s, clock=clock, monotonic=monotonic
    )
    server = ModelServer(follower, faults or FaultInjector(), limits)
    endpoints = _Endpoints(server)
    app = Starlette(
        routes=[
            # ``{target}`` matches no "/", so ``<name>/ready`` never reaches ``model``.
            HttpRoute("/v1/models/{target}", endpoints.model, methods=["GET", "POST"]),
            HttpRoute("/v1/models/{name}/ready", endpoints.model_ready, methods=["GET"]),
            HttpRoute("/v1/models", endpoints.list_models, methods=["GET"]),
            HttpRoute("/metrics", endpoints.metrics, methods=["GET"]),
            HttpRoute("/healthz", endpoints.healthz, methods=["GET"]),
            HttpRoute("/readyz", endpoints.readyz, methods=["GET"]),
        ],
        lifespan=_following(registry, models, server, clock=clock, background=poll_in_background),
    )
    app.state.server = server
    return app


def _following(
    registry: Registry,
    models: list[str] | None,
    server: ModelServer,
    *,
    clock: Callable[[], float],
    background: bool,
) -> Callable[[Starlette], Any]:
    """The app's lifespan: repair half-finished releases, load the routes, follow the registry
    while the app is up; stop following and the prediction threads on the way down."""
    follower = server.follower

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await asyncio.to_thread(repair_releases, registry.catalog, models or None, now=clock())
        except Exception as exc:  # a down catalog must not keep the server from starting
            log.warning("release repair skipped: %s", exc)
        await asyncio.to_thread(follower.start, background=background)
        try:
            yield
        finally:
            await asyncio.to_thread(follower.stop)
            server.close()

    return lifespan


class _Endpoints:
    """The HTTP routes of one ``ModelServer``."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server
        self.follower = server.follower

    async def model(self, request: Request) -> Response:
        """``/v1/models/<name>[:verb]``: predict, feedback and reset-latency (POST); stats and
        status (GET)."""
        server = self.server
        name, _, verb = request.path_params["target"].partition(":")
        if request.method == "POST" and verb == "predict":
            return await server.predict(request, name)  # checks its own credentials
        if request.method == "POST" and verb == "explain":  # as predict: its own credentials
            return await server.explainer.explain(request, name)
        try:  # everything else reads or moves the server's state: the token, when set
            server.limits.check_token(request.headers.get("authorization"))
        except InvalidRequestError as exc:
            return refusal(exc)
        if request.method == "POST":
            if verb == "feedback":
                return await server.feedback(request, name)
            if verb == "reset-latency":  # benchmarks: start a clean latency window
                server.book.reset_recent()
                server.explainer.reset_recent()
                return json_response({"reset": True})
        elif verb == "stats":
            return json_response(server.stats(name, recent="recent" in request.query_params))
        elif not verb:
            if name not in self.follower.routes:
                return problem(404, f"model {name!r} is not served here")
            return json_response(self.follower.status(name))
        return problem(405, f"{request.method} {verb or 'status'} is not supported")

    async def list_models(self, request: Request) -> Response:
        try:
            self.server.limits.check_token(request.headers.get("authorization"))
        except InvalidRequestError as exc:
            return refusal(exc)
        follower = self.follower
        return json_response({"models": [follower.status(m) for m in sorted(follower.routes)]})

    async def metrics(self, request: Request) -> Response:
        return Response(self.server.metrics_text(), media_type=CONTENT_TYPE)

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    def _expected(self) -> list[str]:
        """The models this server serves: those it was told, or every model it has read."""
        return self.follower.models or sorted(self.follower.routes)

    async def readyz(self, request: Request) -> Response:
        """Ready once every served model that has a champion has one loaded; a model without a
        champion (a new spec) is listed under ``no_champion`` and does not fail it."""
        expected = self._expected()
        ready: list[str] = []
        no_champion: list[str] = []
        reasons: dict[str, str] = {}
        for model in expected:
            state, reason = self.follower.readiness(model)
            if state == "ready":
                ready.append(model)
            elif state == "no_champion":
                no_champion.append(model)
            else:
                reasons[model] = reason or "not ready"
        body: dict[str, Any] = {"models": ready, "no_champion": no_champion}
        if reasons or not expected:
            if not expected:
                body["error"] = "no model to serve" + (
                    f": {error}" if (error := self.follower.last_poll_error) else ""
                )
            return json_response(
                {"ready": False, **body, "missing": list(reasons), "reasons": reasons}, 503
            )
        return json_response({"ready": True, **body})

    async def model_ready(self, request: Request) -> Response:
        """KServe v1 per-model readiness: 200 ``{"name", "ready": true}`` once its champion is
        loaded, 503 with the reason until then, 404 for a model not served here. Open, like
        ``/readyz``."""
        name = request.path_params["name"]
        if name not in self._expected():
            return problem(404, f"model {name!r} is not served here")
        state, reason = self.follower.readiness(name)
        if state != "ready":
            return json_response({"name": name, "ready": False, "reason": reason}, 503)
        route = self.follower.routes[name]
        version = route.champion.version if route.champion is not None else None
        return json_response({"name": name, "ready": True, "version": version})
