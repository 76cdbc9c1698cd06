"""The state and request handling behind the model server's endpoints: predict (routed, scored
on worker threads, counted), feedback (labels scored against the answering version), stats.

Order of business for every request: credentials, then the body (up to its limit), then its
content; only a request that passed all three reaches a model, and only an answer or the
model's own failure moves a counter. Each accepted predict request moves its model's client
counter once (ok, fallback or error) and the per-version counters of every version that tried
to answer it (``serving.metrics`` says how the two add up). Versions out of use for longer than
``ServeLimits.retired_series_grace_s`` leave the stats and ``/metrics`` (``serving.retirement``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from registry.errors import InvalidInstanceError, InvalidRequestError, ModelError
from serving.cpu_cost import CpuBook, cpu_timed
from serving.explain import Explainer
from serving.faults import FaultInjector
from serving.feedback import FeedbackLog
from serving.follower import AliasFollower
from serving.limits import ServeLimits
from serving.metrics import ServerCollector, render_metrics
from serving.requests import (
    parse_feedback,
    parse_instances,
    parse_json,
    read_body,
    request_id,
    routing_key,
)
from serving.responses import dumps, json_response, problem, refusal
from serving.retirement import Retirements
from serving.routing import LoadedModel, Route
from serving.stats import StatsBook

__all__ = ["ModelServer"]

log = logging.getLogger(__name__)
T = TypeVar("T")


# Work this small runs on the event loop: a hop to a worker thread and back costs more than it.
# Anything larger (up to ``max_instances`` and ``max_body_bytes``) is parsed and scored on a
# worker thread, so a maximal request leaves the loop free to answer everyone else (callers'
# p99 beside back-to-back maximal requests: bench/serving.py prints it against none).
INLINE_INSTANCES = 8
INLINE_BODY_BYTES = 16 << 10


def _predict(bundle: Any, instances: list[dict[str, Any]]) -> list[float]:
    """The model's predictions as floats (on a worker thread for large batches)."""
    predictions: list[float] = bundle.predict(instances).tolist()
    return predictions


def _parse(body: bytes, max_instances: int) -> tuple[Any, list[dict[str, Any]]]:
    """(document, instances) of a predict body (on a worker thread for large bodies)."""
    payload = parse_json(body)
    return payload, parse_instances(payload, max_instances)


class ModelServer:
    """State behind the app: routes, stats, feedback log, faults, limits, prediction threads."""

    def __init__(
        self, follower: AliasFollower, faults: FaultInjector, limits: ServeLimits | None = None
    ) -> None:
        self.follower = follower
        self.faults = faults
        self.limits = limits = limits or ServeLimits()
        self.book = StatsBook()
        # Which process these counters live in: a reader comparing two snapshots of different
        # instances knows the counters restarted between them.
        self.instance = uuid.uuid4().hex
        self.feedback_log = FeedbackLog(limits.feedback_capacity, limits.feedback_max_predictions)
        self.cpu = CpuBook()  # prediction CPU seconds per version (serving.cpu_cost)
        self.collector = ServerCollector(
            self.book, self._route_weights, self._load_failures, cpu=self.cpu
        )
        self.retirements = Retirements(limits.retired_series_grace_s, follower.clock)
        follower.route_listeners.append(self.retirements.route_changed)
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: set[str] = set()  # request ids being answered right now
        self.explainer = Explainer(self)  # ``:explain``, counted apart from predictions

    def _route_weights(self) -> list[tuple[str, int, str, float]]:
        return [w for route in list(self.follower.routes.values()) for w in route.weights()]

    def _load_failures(self) -> dict[tuple[str, int], int]:
        return dict(self.follower.load_failures)

    def metrics_text(self) -> bytes:
        """``GET /metrics``: the Prometheus exposition, retired versions pruned first."""
        self.retirements.prune(self.book, self.follower)
        self.cpu.keep_only((s.model, s.version) for s in self.book)
        return render_metrics(self.collector)

    def close(self) -> None:
        """Stop the prediction threads (the app's shutdown)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def score(self, loaded: LoadedModel, instances: list[dict[str, Any]]) -> list[float]:
        """Predict with ``loaded`` (a large batch on a worker thread), through any fault
        injected for it; a non-finite prediction is the model's failure (``ModelError``)."""
        fault = self.faults.get(loaded.model, loaded.version)
        if fault is not None:
            if fault.extra_latency_s:
                await asyncio.sleep(fault.extra_latency_s)
            fault.check()
        if len(instances) <= INLINE_INSTANCES:
            predictions, cpu_s = cpu_timed(_predict, loaded.bundle, instances)
        else:
            predictions, cpu_s = await self._off_loop(cpu_timed, _predict, loaded.bundle, instances)
        self.cpu.add(loaded.model, loaded.version, cpu_s)  # a refused instance raised above
        if fault is not None and fault.prediction_shift:
            predictions = [p + fault.prediction_shift for p in predictions]
        if not all(math.isfinite(p) for p in predictions):  # never NaN in an answer
            raise ModelError("it predicted a non-finite value")
        return predictions

    async def _off_loop(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` on a prediction thread; at most ``predict_threads`` run at once, the
        rest wait their turn (holding only their parsed request)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.limits.predict_threads, "predict")
        return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)

    async def predict(self, request: Request, name: str) -> Response:
        started = time.perf_counter()
        limits = self.limits
        try:
            limits.check_token(request.headers.get("authorization"), required=limits.auth_predict)
            route = self.follower.routes.get(name)
            if route is None:
                return problem(404, f"model {name!r} is not served here")
            if route.champion is None:  # known here, nothing loaded yet: the caller gets a 5xx
                self.book.client(name).record("error", time.perf_counter() - started)
                return problem(503, f"model {name!r} has no champion loaded yet")
            chosen = request_id(request, limits.request_id_max_chars)
            instances, key = await self.read_instances(request, limits.max_instances)
            rid = self._claim(chosen)
        except InvalidRequestError as exc:
            return refusal(exc)
        try:
            return await self._answer(route, instances, key, rid, started)
        except Exception as exc:  # a bug, not the model: still an answer its caller sees
            log.exception("predict for %s failed", name)
            self.book.client(name).record("error", time.perf_counter() - started)
            return problem(500, f"model {name!r} could not answer: {type(exc).__name__}")
        finally:
            self._in_flight.discard(rid)

    async def read_instances(
        self, request: Request, max_instances: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The instances of a predict body (``:explain`` reads the same) and its sticky routing
        key; a large body is parsed on a worker thread. Raises ``InvalidRequestError``."""
        body = await read_body(request, self.limits.max_body_bytes)
        if len(body) <= INLINE_BODY_BYTES:
            payload, instances = _parse(body, max_instances)
        else:
            payload, instances = await self._off_loop(_parse, body, max_instances)
        return instances, routing_key(request, payload, self.limits.request_id_max_chars)

    def _claim(self, chosen: str | None) -> str:
        """The id of this answer: the caller's, unless another answer holds it, or a fresh one.

        No await between the check and the claim, so two requests cannot both take an id.
        """
        if chosen is None:
            return uuid.uuid4().hex
        if chosen in self._in_flight or chosen in self.feedback_log:
            raise InvalidRequestError(
                f"X-Request-Id {chosen!r} belongs to another answer still awaiting feedback; "
                "send a unique id, or none and use the one in the answer",
                field="x-request-id",
                status=409,
            )
        self._in_flight.add(chosen)
        return chosen

    async def _answer(
        self,
        route: Route,
        instances: list[dict[str, Any]],
        key: str | None,
        rid: str,
        started: float,
    ) -> Response:
        picked, variant, shadow = route.pick(key)
        scored = await self._score_or_fall_back(route, picked, variant, instances, started)
        client = self.book.client(route.model)
        if isinstance(scored, Response):  # a 422 (the caller's instance) is a refusal
            if scored.status_code >= 500:
                client.record("error", time.perf_counter() - started)
            return scored
        loaded, answered, predictions = scored
        body = dumps(
            {
                "predictions": predictions,
                "model_version": loaded.version,
                "variant": answered,
                "request_id": rid,
            }
        )
        series = self.book.series(route.model, loaded.version, answered)
        latency_s = time.perf_counter() - started
        series.observe(latency_s, predictions)
        self.feedback_log.remember(rid, series, predictions, loaded.label_range())
        task = None if shadow is None else BackgroundTask(self._shadow, shadow, instances, rid)
        client.record("ok" if answered == variant else "fallback", latency_s)
        return Response(body, media_type="application/json", background=task)

    async def _score_or_fall_back(
        self,
        route: Route,
        loaded: LoadedModel,
        variant: str,
        instances: list[dict[str, Any]],
        started: float,
    ) -> tuple[LoadedModel, str, list[float]] | Response:
        """(version that answered, variant, predictions), or the error answer.

        The caller's bad instance is a 422 counted nowhere; the model's own failure is counted
        as an error of its version, and a failed canary is answered for by the champion.
        """
        champion = route.champion
        while True:
            try:
                return loaded, variant, await self.score(loaded, instances)
            except InvalidInstanceError as exc:
                return problem(422, str(exc), exc.field)
            except Exception as exc:
                self.book.series(route.model, loaded.version, variant).fail(
                    time.perf_counter() - started
                )
                if variant != "canary" or champion is None:
                    log.error("predict failed for %s v%s: %s", route.model, loaded.version, exc)
                    return problem(500, f"model {route.model!r} v{loaded.version} failed: {exc}")
            # The canary failed: answer from the champion so the caller never sees it.
            loaded, variant = champion, "champion"

    async def _shadow(
        self, loaded: LoadedModel, instances: list[dict[str, Any]], request_id: str
    ) -> None:
        started = time.perf_counter()
        try:
            predictions = await self.score(loaded, instances)
        except InvalidInstanceError:
            return  # the instance does not suit the shadow's features: nobody's failure
        except Exception:
            self.book.series(loaded.model, loaded.version, "shadow").fail(
                time.perf_counter() - started
            )
            return
        series = self.book.series(loaded.model, loaded.version, "shadow")
        series.observe(time.perf_counter() - started, predictions)
        # The request's labels, when they come, score the shadow too (its online metric).
        self.feedback_log.shadowed(request_id, series, predictions)

    async def feedback(self, request: Request, name: str) -> Response:
        """Score delayed labels; all items are checked before any is applied."""
        limits = self.limits
        try:
            limits.check_token(request.headers.get("authorization"))
            payload = parse_json(await read_body(request, limits.max_body_bytes))
            items = parse_feedback(payload, limits.max_instances)
            matched = self.feedback_log.match(items, name)
        except InvalidRequestError as exc:
            return refusal(exc)
        for item, answer in matched:
            self.feedback_log.pop(item.request_id)
            labels = [float(v) for v in item.labels]
            answer.series.feedback(answer.predictions, labels)
            if answer.shadow is not None:
                answer.shadow.feedback(answer.shadow_predictions, labels)
        return json_response({"accepted": len(matched), "unknown": len(items) - len(matched)})

    def stats(self, name: str, *, recent: bool = False) -> dict[str, Any]:
        """Cumulative counters of ``name`` plus what is routed now (the analysis reads this);
        ``client`` is what its callers received, ``series`` what each version did."""
        self.retirements.prune(self.book, self.follower)
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
        snapshot["instance"] = self.instance
        snapshot["explain"] = self.explainer.snapshot(name)
        return snapshot
