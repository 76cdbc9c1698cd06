"""The model server: a lean Starlette app speaking the KServe v1 protocol.

- ``POST /v1/models/<name>:predict``: ``{"instances": [...]}`` -> predictions, version, variant
- ``POST /v1/models/<name>:feedback``: delayed labels by request id (online metrics)
- ``GET /v1/models/<name>:stats``: cumulative per-version counters, the canary analysis source
  (``?recent=1`` adds exact recent latency percentiles; ``POST :reset-latency`` clears them)
- ``GET /v1/models/<name>``: versions, weights, health; ``GET /v1/models``: every model
- ``GET /metrics``: Prometheus text; ``GET /healthz``, ``GET /readyz``
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HttpRoute

from registry.errors import InvalidRequestError
from registry.release import repair_releases
from serving.faults import FaultInjector
from serving.follower import AliasFollower
from serving.metrics import CONTENT_TYPE, ServerCollector, render_metrics
from serving.responses import dumps, json_response, parse_instances, problem
from serving.routing import LoadedModel
from serving.stats import FeedbackLog, StatsBook

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["ModelServer", "create_app"]

log = logging.getLogger(__name__)


class ModelServer:
    """State behind the app: routes, stats, feedback log, faults."""

    def __init__(self, follower: AliasFollower, faults: FaultInjector) -> None:
        self.follower = follower
        self.faults = faults
        self.book = StatsBook()
        self.feedback_log = FeedbackLog()
        self.collector = ServerCollector(self.book, self._route_weights, self._load_failures)

    def _route_weights(self) -> list[tuple[str, int, str, float]]:
        out: list[tuple[str, int, str, float]] = []
        for route in list(self.follower.routes.values()):
            champion_share, canary_share = route.shares()
            if route.champion is not None:
                out.append((route.model, route.champion.version, "champion", champion_share))
            if route.canary is not None:
                variant = "shadow" if route.shadow else "canary"
                out.append((route.model, route.canary.version, variant, canary_share))
        return out

    def _load_failures(self) -> dict[tuple[str, int], int]:
        return dict(self.follower.load_failures)

    async def score(self, loaded: LoadedModel, instances: list[dict[str, Any]]) -> list[float]:
        """Predict with ``loaded``, through any fault injected for it."""
        fault = self.faults.get(loaded.model, loaded.version)
        if fault is not None:
            if fault.extra_latency_s:
                await asyncio.sleep(fault.extra_latency_s)
            fault.check()
        predictions: list[float] = loaded.bundle.predict(instances).tolist()
        if fault is not None and fault.prediction_shift:
            predictions = [p + fault.prediction_shift for p in predictions]
        return predictions

    async def predict(self, request: Request, name: str) -> Response:
        started = time.perf_counter()
        route = self.follower.routes.get(name)
        if route is None or route.champion is None:
            return problem(404 if route is None else 503, f"model {name!r} is not served here")
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return problem(400, "request body is not valid JSON", "body")
        try:
            instances = parse_instances(payload)
        except InvalidRequestError as exc:
            return problem(400 if exc.field == "instances" else 422, str(exc), exc.field)
        key = request.headers.get("x-request-key") or payload.get("request_key")
        loaded, variant, shadow = route.pick(str(key) if key is not None else None)
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        series = self.book.series(name, loaded.version, variant)
        try:
            predictions = await self.score(loaded, instances)
        except Exception as exc:
            field = getattr(exc, "field", None)
            if field is not None:  # registry.errors.InvalidInstanceError: the caller's fault
                series.invalid += 1
                return problem(422, str(exc), str(field))
            series.fail(time.perf_counter() - started)
            if variant != "canary":
                log.error("predict failed for %s v%s: %s", name, loaded.version, exc)
                return problem(500, f"model {name!r} v{loaded.version} failed: {exc}")
            # The canary failed: answer from the champion so the caller never sees it.
            loaded, variant = route.champion, "champion"
            series = self.book.series(name, loaded.version, variant)
            try:
                predictions = await self.score(loaded, instances)
            except Exception as exc2:
                series.fail(time.perf_counter() - started)
                return problem(500, f"model {name!r} v{loaded.version} failed: {exc2}")
        body = dumps(
            {
                "predictions": predictions,
                "model_version": loaded.version,
                "variant": variant,
                "request_id": request_id,
            }
        )
        series.observe(time.perf_counter() - started, predictions)
        self.feedback_log.remember(request_id, series, predictions)
        task = None if shadow is None else BackgroundTask(self._shadow, shadow, instances)
        return Response(body, media_type="application/json", background=task)

    async def _shadow(self, loaded: LoadedModel, instances: list[dict[str, Any]]) -> None:
        started = time.perf_counter()
        series = self.book.series(loaded.model, loaded.version, "shadow")
        try:
            predictions = await self.score(loaded, instances)
        except Exception:
            series.fail(time.perf_counter() - started)
            return
        series.observe(time.perf_counter() - started, predictions)

    async def feedback(self, request: Request, name: str) -> Response:
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return problem(400, "request body is not valid JSON", "body")
        items = payload.get("feedback", [payload]) if isinstance(payload, dict) else None
        if not isinstance(items, list):
            return problem(400, "'feedback' must be a list of {request_id, labels}", "feedback")
        accepted = unknown = 0
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("request_id"), str):
                return problem(422, f"feedback[{i}].request_id must be a string", "request_id")
            labels = item.get("labels", [item.get("label")])
            if not isinstance(labels, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in labels
            ):
                return problem(422, f"feedback[{i}].labels must be numbers", "labels")
            found = self.feedback_log.pop(item["request_id"])
            if found is None or found[0].model != name:
                unknown += 1
                continue
            series, predictions = found
            series.feedback(predictions, [float(v) for v in labels])
            accepted += 1
        return json_response({"accepted": accepted, "unknown": unknown})

    def stats(self, name: str, *, recent: bool = False) -> dict[str, Any]:
        """Cumulative counters of ``name`` plus what is routed now (the analysis reads this)."""
        snapshot = self.book.snapshot(name, recent=recent)
        route = self.follower.routes.get(name)
        snapshot["routing"] = {
            "champion": route.champion.version if route and route.champion else None,
            "canary": route.canary.version if route and route.canary else None,
            "weight": route.shares()[1] if route else 0.0,
            "shadow": bool(route and route.shadow),
        }
        snapshot["load_errors"] = {
            str(v): msg for (m, v), msg in self.follower.load_errors.items() if m == name
        }
        return snapshot


def create_app(
    registry: Registry,
    models: list[str] | None = None,
    *,
    poll_interval_s: float = 0.2,
    faults: FaultInjector | None = None,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    poll_in_background: bool = True,
) -> Starlette:
    """The ASGI app serving ``models`` (every model in the catalog when empty).

    On start-up it repairs half-finished releases, loads each champion and canary,
    then follows the registry every ``poll_interval_s`` seconds in a background thread.
    ``app.state.server`` is the ``ModelServer`` (faults, stats) for tests and benchmarks.
    ``clock``/``monotonic`` are the follower's clocks (lease expiry, retry pacing); with
    ``poll_in_background=False`` nothing polls after start-up until someone calls
    ``app.state.server.follower.poll_once()`` (``retrain.testing.serve_in_process`` does).
    """
    follower = AliasFollower(
        registry, models, poll_interval_s=poll_interval_s, clock=clock, monotonic=monotonic
    )
    server = ModelServer(follower, faults or FaultInjector())
    endpoints = _Endpoints(server)
    app = Starlette(
        routes=[
            HttpRoute("/v1/models/{target}", endpoints.model, methods=["GET", "POST"]),
            HttpRoute("/v1/models", endpoints.list_models, methods=["GET"]),
            HttpRoute("/metrics", endpoints.metrics, methods=["GET"]),
            HttpRoute("/healthz", endpoints.healthz, methods=["GET"]),
            HttpRoute("/readyz", endpoints.readyz, methods=["GET"]),
        ],
        lifespan=_following(registry, models, follower, clock=clock, background=poll_in_background),
    )
    app.state.server = server
    return app


def _following(
    registry: Registry,
    models: list[str] | None,
    follower: AliasFollower,
    *,
    clock: Callable[[], float],
    background: bool,
) -> Callable[[Starlette], Any]:
    """The app's lifespan: repair half-finished releases, load the routes, follow the registry
    while the app is up."""

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
        if request.method == "POST":
            if verb == "predict":
                return await server.predict(request, name)
            if verb == "feedback":
                return await server.feedback(request, name)
            if verb == "reset-latency":  # benchmarks: start a clean latency window
                server.book.reset_recent()
                return json_response({"reset": True})
        elif verb == "stats":
            return json_response(server.stats(name, recent="recent" in request.query_params))
        elif not verb:
            if name not in self.follower.routes:
                return problem(404, f"model {name!r} is not served here")
            return json_response(self.follower.status(name))
        return problem(405, f"{request.method} {verb or 'status'} is not supported")

    async def list_models(self, request: Request) -> Response:
        follower = self.follower
        return json_response({"models": [follower.status(m) for m in sorted(follower.routes)]})

    async def metrics(self, request: Request) -> Response:
        return Response(render_metrics(self.server.collector), media_type=CONTENT_TYPE)

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Ready once every expected model has a champion loaded."""
        follower = self.follower
        expected = follower.models or list(follower.routes)
        missing = [
            m for m in expected if (r := follower.routes.get(m)) is None or r.champion is None
        ]
        if missing or not expected:
            return json_response({"ready": False, "missing": missing}, 503)
        return json_response({"ready": True, "models": expected})
