"""The alert receiver: an ASGI app that turns monitoring alerts into (at most) one retrain.

Routes: ``POST /alerts/alertmanager`` (Alertmanager webhook v4), ``/alerts/grafana``,
``/alerts/evidently``, ``/alerts/generic`` (shapes in ``retrain.alerts.payloads``),
``GET /healthz`` and ``GET /metrics`` (decisions per action, ``retrain.alerts.receiver_metrics``).
An alert may ask for a rollback instead of a retrain (``retrain.alerts.rollbacks``).

Every request is authenticated by a bearer token or an HMAC signature (``retrain.alerts.auth``;
a bearer token is checked before the body is read). The body is capped at 1 MiB, by
``Content-Length`` and while streaming, before anything parses it (413), and must arrive
within ``body_timeout_s`` (408: a slow drip cannot hold a request open). The answer is 202
only once every alert of the body is stored in the registry inbox under its dedup key, in one
transaction; the decision (start, fold, ignore) is taken asynchronously by
``retrain.alerts.dispatch.AlertDispatcher``, so acknowledgement stays fast.

The database is never touched on the event loop: inbox writes and registered-pipeline reads
run on ``retrain.alerts.inbox_writer.InboxWriter``'s thread, awaited at most
``store_timeout_s``, then 503 with ``Retry-After``; ``/healthz`` answers throughout. Bodies
over 64 KiB are parsed off the loop too.

An alert for a model with no registered pipeline is stored, marked ``ignored`` and listed
under ``unknown_models``: one Alertmanager group may mix models, and refusing it whole would
lose the others. So, too, an alert whose model label breaks the model-name rule is left out
and listed (by index) under ``invalid_alerts``. A sender's mistake always gets a 4xx; only an
unreachable or busy registry gets a 503 (so the sender retries).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from registry.errors import AlertPayloadError, ConfigError, RegistryError, RetrainError
from registry.inbox import NewAlert
from retrain.alerts.auth import MAX_SIGNATURE_AGE_S, Refused, RequestAuth
from retrain.alerts.bodies import read_capped
from retrain.alerts.dispatch import AlertDispatcher
from retrain.alerts.inbox_writer import InboxWriter
from retrain.alerts.launchers import PrefectLauncher, RetrainLauncher
from retrain.alerts.payloads import SOURCES, AlertSignal, ParsedAlerts, parse_alerts
from retrain.alerts.receiver_metrics import metrics_endpoint
from retrain.config.spec_store import PipelineSummary, list_registered_pipelines

if TYPE_CHECKING:
    from registry.records import AlertRecord
    from registry.store import Registry
    from retrain.config.settings import Settings

__all__ = [
    "BODY_TIMEOUT_S",
    "MAX_BODY_BYTES",
    "STORE_TIMEOUT_S",
    "app_from_environment",
    "create_app",
    "create_app_from_settings",
]

MAX_BODY_BYTES = 1024 * 1024
BODY_TIMEOUT_S = 10.0  # a whole body, headers excepted: 1 MiB at 100 KiB/s
STORE_TIMEOUT_S = 5.0  # how long a request waits for a busy database before its 503
# Parsing a body this large may take milliseconds (a hostile one up to ~0.2 s): off the loop.
_PARSE_OFF_LOOP_BYTES = 64 * 1024
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

    @property
    def known(self) -> Mapping[str, PipelineSummary]:
        """As last read, without reading (for the event loop)."""
        return self._models

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
    body_timeout_s: float = BODY_TIMEOUT_S,
    store_timeout_s: float = STORE_TIMEOUT_S,
    sweep_interval_s: float = 30.0,
    models_ttl_s: float = 5.0,
    retention_days: float = 30.0,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The receiver app; its dispatcher runs while the app is up (``app.state.dispatcher``).

    ``clock`` is the time trigger decisions use (a simulation passes its own);
    ``retention_days`` how long decided alerts stay in the inbox."""
    auth = RequestAuth(token, hmac_secret, max_signature_age_s)  # ConfigError without either
    models = _ModelDirectory(registry, models_ttl_s)
    activity = _Activity()
    dispatcher = AlertDispatcher(
        registry,
        launcher,
        models,
        sweep_interval_s=sweep_interval_s,
        retention_days=retention_days,
        is_busy=activity.busy,
        clock=clock,
    )
    writer = InboxWriter(_inbox_write(registry, dispatcher, models), store_timeout_s)
    endpoint = _AlertEndpoint(
        dispatcher, writer, auth, models, activity, (max_body_bytes, body_timeout_s), clock
    )
    app = Starlette(
        routes=[
            Route("/alerts/{source}", endpoint.receive, methods=["POST"]),
            Route("/healthz", _healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint(dispatcher), methods=["GET"]),
        ],
        lifespan=_dispatching(dispatcher, writer),
    )
    app.state.dispatcher = dispatcher
    return app


def _inbox_write(
    registry: Registry, dispatcher: AlertDispatcher, models: _ModelDirectory
) -> Callable[[Sequence[NewAlert]], Stored]:
    """What the writer thread runs: alerts stored in one transaction, then the registered
    pipelines re-read if stale (here, so the event loop never reads the database)."""

    def write(alerts: Sequence[NewAlert]) -> Stored:
        with dispatcher.write_lock:
            stored = registry.catalog.add_alerts(alerts)
        try:
            models()
        except RetrainError as exc:  # the alerts are stored: answer with the last list read
            log.warning("registered pipelines not re-read: %s", exc)
        return stored

    return write


class _Answer(JSONResponse):
    """JSON with non-ASCII escaped: whatever an error message quotes, it always encodes."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("ascii")


class _AlertEndpoint:
    """``POST /alerts/{source}``: authenticate, read, parse and store; new alerts go to the
    dispatcher only once stored, so a 202 never promises an alert that could be lost."""

    def __init__(
        self,
        dispatcher: AlertDispatcher,
        writer: InboxWriter[NewAlert, tuple[AlertRecord, bool]],
        auth: RequestAuth,
        models: _ModelDirectory,
        activity: _Activity,
        body_limits: tuple[int, float],
        clock: Callable[[], float],
    ) -> None:
        self._dispatcher = dispatcher
        self._writer = writer
        self._auth = auth
        self._models = models
        self._activity = activity
        self._max_body_bytes, self._body_timeout_s = body_limits
        self._clock = clock

    async def receive(self, request: Request) -> JSONResponse:
        with self._activity:
            return await self._handle(request)

    async def _handle(self, request: Request) -> JSONResponse:
        try:
            parsed = await self._read(request)
            stored = await self._writer.store([_new_alert(s) for s in parsed.signals])
        except (Refused, AlertPayloadError) as exc:
            # An unread body stays on the connection: close it rather than wait for the rest.
            close = {"Connection": "close"} if exc.status in (408, 413) else None
            return _Answer({"error": str(exc)}, status_code=exc.status, headers=close)
        except ConfigError as exc:  # a value the database refuses: nothing of the body stored
            return _Answer({"error": str(exc)}, status_code=422)
        except RegistryError as exc:
            log.error("alert not stored: %s", exc)
            retry = str(self._writer.retry_after_s)
            body = {"error": f"alert inbox unavailable; retry in {retry} s"}
            return _Answer(body, status_code=503, headers={"Retry-After": retry})
        for record, created in stored:
            if created or record.state == "received":
                self._dispatcher.submit(record)
        if parsed.invalid:
            log.warning("%d alerts of a group left out: %s", len(parsed.invalid), parsed.invalid)
        return _Answer(_answer(stored, self._models.known, parsed), status_code=202)

    async def _read(self, request: Request) -> ParsedAlerts:
        """The body's alerts, once the request is authenticated; ``Refused`` or a payload error
        for one that cannot be taken."""
        source = request.path_params["source"]
        if source not in SOURCES:
            raise Refused(404, f"unknown alert source; use one of {sorted(SOURCES)}")
        authorization = request.headers.get("authorization")
        if authorization:  # checked before the body is read: a wrong token costs nothing
            self._auth.check_bearer(authorization)
        body = await read_capped(request, self._max_body_bytes, self._body_timeout_s)
        if not authorization:
            self._auth.check_signature(request.headers, body)
        now = self._clock()  # the time of receipt dates a generic alert without a dedup key
        if len(body) > _PARSE_OFF_LOOP_BYTES:
            return await run_in_threadpool(parse_alerts, source, body, now=now)
        return parse_alerts(source, body, now=now)  # small: cheaper here than a hop to a thread


def _new_alert(s: AlertSignal) -> NewAlert:
    return NewAlert(s.dedup_key, s.source, s.model, s.status, s.payload, s.action)


async def _healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _dispatching(
    dispatcher: AlertDispatcher,
    writer: InboxWriter[NewAlert, tuple[AlertRecord, bool]],
) -> Callable[[Starlette], Any]:
    """The app's lifespan: the dispatcher thread runs while the app is up."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(dispatcher.start)
        try:
            yield
        finally:
            writer.stop()
            await run_in_threadpool(dispatcher.stop)

    return lifespan


def _answer(
    stored: Stored, known: Mapping[str, PipelineSummary], parsed: ParsedAlerts
) -> dict[str, Any]:
    return {
        "alerts": [
            {
                "id": r.id,
                "model": r.model,
                "status": r.status,
                "action": r.action,
                "duplicate": not created,
            }
            for r, created in stored
        ],
        "unknown_models": sorted({r.model for r, _ in stored if r.model not in known}),
        "invalid_alerts": parsed.invalid,
    }


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
    return create_app(
        registry,
        launcher or PrefectLauncher(),
        token=token,
        hmac_secret=secret,
        retention_days=settings.alerts_retention_days,
    )


def app_from_environment() -> Starlette:
    """Entry point for ``uvicorn --factory retrain.alerts.receiver:app_from_environment``."""
    from retrain.config.settings import Settings

    return create_app_from_settings(Settings())
