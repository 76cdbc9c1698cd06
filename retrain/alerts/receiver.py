"""The alert receiver: an ASGI app that turns monitoring alerts into (at most) one retrain.

Routes: ``POST /alerts/alertmanager`` (Alertmanager webhook v4), ``/alerts/grafana``,
``/alerts/evidently``, ``/alerts/generic`` (shapes in ``retrain.alerts.payloads``), and
``GET /healthz``.

Every request is authenticated by a bearer token or an HMAC signature (``retrain.alerts.auth``;
a bearer token is checked before the body is read). The body is capped at 1 MiB, by
``Content-Length`` and while streaming, before anything parses it (413). The answer is 202
only once every alert is stored in the registry inbox under its dedup key; the decision
(start, fold, ignore) is taken asynchronously by ``retrain.alerts.dispatch.AlertDispatcher``,
so acknowledgement stays fast.

An alert for a model with no registered pipeline is stored, marked ``ignored`` and listed
under ``unknown_models`` in the 202 answer: one Alertmanager group may mix models, and refusing
the whole notification for one of them would lose the others. A sender's mistake always gets a
4xx; only an unreachable registry gets a 503 (so the sender retries).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from registry.errors import AlertPayloadError, RegistryError
from retrain.alerts.auth import MAX_SIGNATURE_AGE_S, Refused, RequestAuth
from retrain.alerts.dispatch import AlertDispatcher
from retrain.alerts.launchers import PrefectLauncher, RetrainLauncher
from retrain.alerts.payloads import SOURCES, AlertSignal, parse_alerts
from retrain.config.spec_store import PipelineSummary, list_registered_pipelines

if TYPE_CHECKING:
    from registry.records import AlertRecord
    from registry.store import Registry
    from retrain.config.settings import Settings

__all__ = ["MAX_BODY_BYTES", "app_from_environment", "create_app", "create_app_from_settings"]

MAX_BODY_BYTES = 1024 * 1024
log = logging.getLogger(__name__)
# Background work waits for this long without a request before it counts as quiet.
_QUIET_S = 0.02
Stored = list[tuple["AlertRecord", bool]]  # each alert's inbox record, and whether it is new


class _ModelDirectory:
    """Registered pipelines by name, re-read from the registry at most every ``ttl_s``."""

    def __init__(self, registry: Registry, ttl_s: float) -> None:
        self._registry = registry
        self._ttl_s = ttl_s
        self._models: dict[str, PipelineSummary] = {}
        self._read_at = float("-inf")

    def __call__(self) -> Mapping[str, PipelineSummary]:
        if time.monotonic() - self._read_at > self._ttl_s:
            pipelines = list_registered_pipelines(self._registry)
            self._models = {p.name: p for p in pipelines}
            self._read_at = time.monotonic()
        return self._models


class _Activity:
    """Requests in flight, so background writes can wait for a quiet moment."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.last = 0.0

    def __enter__(self) -> None:
        self.in_flight += 1

    def __exit__(self, *exc: object) -> None:
        self.in_flight -= 1
        self.last = time.monotonic()

    def busy(self) -> bool:
        return self.in_flight > 0 or time.monotonic() - self.last < _QUIET_S


def create_app(
    registry: Registry,
    launcher: RetrainLauncher,
    *,
    token: str | None = None,
    hmac_secret: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_signature_age_s: float = MAX_SIGNATURE_AGE_S,
    sweep_interval_s: float = 30.0,
    models_ttl_s: float = 5.0,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The receiver app; its dispatcher runs while the app is up (``app.state.dispatcher``).

    ``clock`` is the time trigger decisions use (a simulation passes its own)."""
    auth = RequestAuth(token, hmac_secret, max_signature_age_s)  # ConfigError without either
    models = _ModelDirectory(registry, models_ttl_s)
    activity = _Activity()
    dispatcher = AlertDispatcher(
        registry,
        launcher,
        models,
        sweep_interval_s=sweep_interval_s,
        is_busy=activity.busy,
        clock=clock,
    )
    endpoint = _AlertEndpoint(registry, dispatcher, auth, models, activity, max_body_bytes)
    app = Starlette(
        routes=[
            Route("/alerts/{source}", endpoint.receive, methods=["POST"]),
            Route("/healthz", _healthz, methods=["GET"]),
        ],
        lifespan=_dispatching(dispatcher),
    )
    app.state.dispatcher = dispatcher
    return app


class _AlertEndpoint:
    """``POST /alerts/{source}``: authenticate, read, parse and store; new alerts go to the
    dispatcher only once stored, so a 202 never promises an alert that could be lost."""

    def __init__(
        self,
        registry: Registry,
        dispatcher: AlertDispatcher,
        auth: RequestAuth,
        models: _ModelDirectory,
        activity: _Activity,
        max_body_bytes: int,
    ) -> None:
        self._registry = registry
        self._dispatcher = dispatcher
        self._auth = auth
        self._models = models
        self._activity = activity
        self._max_body_bytes = max_body_bytes

    async def receive(self, request: Request) -> JSONResponse:
        with self._activity:
            return await self._handle(request)

    async def _handle(self, request: Request) -> JSONResponse:
        try:
            stored, known = await self._accept(request)
        except (Refused, AlertPayloadError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except RegistryError as exc:
            log.error("alert not stored: %s", exc)
            return JSONResponse({"error": "alert inbox unavailable; retry"}, status_code=503)
        for record, created in stored:
            if created or record.state == "received":
                self._dispatcher.submit(record)
        return JSONResponse(_answer(stored, known), status_code=202)

    async def _accept(self, request: Request) -> tuple[Stored, Mapping[str, PipelineSummary]]:
        """The stored alerts and the registered pipelines; ``Refused`` or a payload or registry
        error for a request that cannot be taken."""
        source = request.path_params["source"]
        if source not in SOURCES:
            raise Refused(404, f"unknown alert source; use one of {sorted(SOURCES)}")
        authorization = request.headers.get("authorization")
        if authorization:  # checked before the body is read: a wrong token costs nothing
            self._auth.check_bearer(authorization)
        body = await _read_capped(request, self._max_body_bytes)
        if not authorization:
            self._auth.check_signature(request.headers, body)
        signals = parse_alerts(source, body)
        # Inline on purpose: a short SQLite/PostgreSQL insert costs less than a hop to a
        # worker thread and back, and hops are what stretched the tail under load.
        stored = self._store(signals)
        return stored, self._models()

    def _store(self, signals: list[AlertSignal]) -> Stored:
        with self._dispatcher.write_lock:
            return [
                self._registry.catalog.add_alert(
                    s.dedup_key, source=s.source, model=s.model, status=s.status, payload=s.payload
                )
                for s in signals
            ]


async def _healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _dispatching(
    dispatcher: AlertDispatcher,
) -> Callable[[Starlette], Any]:
    """The app's lifespan: the dispatcher thread runs while the app is up."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(dispatcher.start)
        try:
            yield
        finally:
            await run_in_threadpool(dispatcher.stop)

    return lifespan


def _answer(stored: Stored, known: Mapping[str, PipelineSummary]) -> dict[str, Any]:
    return {
        "alerts": [
            {"id": r.id, "model": r.model, "status": r.status, "duplicate": not created}
            for r, created in stored
        ],
        "unknown_models": sorted({r.model for r, _ in stored if r.model not in known}),
    }


async def _read_capped(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refused(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise Refused(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app_from_settings(
    settings: Settings,
    *,
    launcher: RetrainLauncher | None = None,
    registry_factory: Callable[[Settings], Registry] | None = None,
) -> Starlette:
    """The receiver wired from ``settings`` (token/secret, registry), starting runs in Prefect."""
    from retrain.config.wiring import build_registry

    token = settings.alerts_token.get_secret_value() if settings.alerts_token else None
    secret = settings.alerts_hmac_secret.get_secret_value() if settings.alerts_hmac_secret else None
    registry = (registry_factory or build_registry)(settings)
    return create_app(registry, launcher or PrefectLauncher(), token=token, hmac_secret=secret)


def app_from_environment() -> Starlette:
    """Entry point for ``uvicorn --factory retrain.alerts.receiver:app_from_environment``."""
    from retrain.config.settings import Settings

    return create_app_from_settings(Settings())
