"""The alert receiver: an ASGI app that turns monitoring alerts into (at most) one retrain.

Routes: ``POST /alerts/alertmanager`` (Alertmanager webhook v4), ``/alerts/grafana``,
``/alerts/evidently``, ``/alerts/generic`` (shapes in ``retrain.alerts.payloads``), and
``GET /healthz``.

Every request is authenticated by either

- ``Authorization: Bearer <token>``, or
- an HMAC-SHA256 signature: ``X-Retrain-Timestamp: <unix seconds>`` and
  ``X-Retrain-Signature: sha256=<hex of HMAC(secret, "<timestamp>.<body>")>``; a timestamp
  more than five minutes away from the receiver's clock is refused (replays).

Both are compared in constant time. The body is capped at 1 MiB, by ``Content-Length`` and
while streaming, before anything parses it (413). The answer is 202 only once every alert is
stored in the registry inbox under its dedup key; the decision (start, fold, ignore) is taken
asynchronously by ``retrain.alerts.dispatch.AlertDispatcher``, so acknowledgement stays fast.

An alert for a model with no registered pipeline is stored, marked ``ignored`` and listed
under ``unknown_models`` in the 202 answer: one Alertmanager group may mix models, and refusing
the whole notification for one of them would lose the others. A sender's mistake always gets a
4xx; only an unreachable registry gets a 503 (so the sender retries).
"""

from __future__ import annotations

import hashlib
import hmac
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

from registry.errors import AlertPayloadError, ConfigError, RegistryError
from retrain.alerts.dispatch import AlertDispatcher
from retrain.alerts.launchers import PrefectLauncher, RetrainLauncher
from retrain.alerts.payloads import SOURCES, AlertSignal, parse_alerts
from retrain.config.spec_store import PipelineSummary, list_registered_pipelines

if TYPE_CHECKING:
    from registry.records import AlertRecord
    from registry.store import Registry
    from retrain.config.settings import Settings

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_SIGNATURE_AGE_S",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "app_from_environment",
    "create_app",
    "create_app_from_settings",
    "sign_body",
]

MAX_BODY_BYTES = 1024 * 1024
MAX_SIGNATURE_AGE_S = 300.0
TIMESTAMP_HEADER = "x-retrain-timestamp"
SIGNATURE_HEADER = "x-retrain-signature"
log = logging.getLogger(__name__)
# Background work waits for this long without a request before it counts as quiet.
_QUIET_S = 0.02


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def sign_body(secret: str, body: bytes, timestamp: float | None = None) -> dict[str, str]:
    """The headers that sign ``body`` for the receiver (what a sender adds)."""
    stamp = str(int(time.time() if timestamp is None else timestamp))
    mac = _mac(secret.encode(), stamp, body)
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: f"sha256={mac}"}


def _mac(secret: bytes, stamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"``: what a sender signs, what is checked."""
    return hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()


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
    if not token and not hmac_secret:
        raise ConfigError(
            "the alert receiver needs RETRAIN_ALERTS_TOKEN or RETRAIN_ALERTS_HMAC_SECRET"
        )
    token_bytes = token.encode() if token else None
    secret_bytes = hmac_secret.encode() if hmac_secret else None
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

    def check_bearer(header: str) -> None:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or token_bytes is None:
            raise _Refused(401, "unsupported Authorization; use a bearer token or a signature")
        if not hmac.compare_digest(credential.strip().encode(), token_bytes):
            raise _Refused(401, "invalid bearer token")

    def check_signature(request: Request, body: bytes) -> None:
        stamp = request.headers.get(TIMESTAMP_HEADER)
        signature = request.headers.get(SIGNATURE_HEADER)
        if secret_bytes is None or not stamp or not signature:
            raise _Refused(401, "missing credentials: a bearer token or a signed timestamp")
        try:
            sent = float(stamp)
        except ValueError:
            raise _Refused(400, f"{TIMESTAMP_HEADER} must be unix seconds") from None
        if abs(time.time() - sent) > max_signature_age_s:
            raise _Refused(401, "timestamp is more than 5 minutes off; sign again and resend")
        given = signature.removeprefix("sha256=").strip().encode()
        if not hmac.compare_digest(given, _mac(secret_bytes, stamp, body).encode()):
            raise _Refused(401, "invalid signature")

    def store(signals: list[AlertSignal]) -> list[tuple[AlertRecord, bool]]:
        with dispatcher.write_lock:
            return [
                registry.catalog.add_alert(
                    s.dedup_key, source=s.source, model=s.model, status=s.status, payload=s.payload
                )
                for s in signals
            ]

    async def receive(request: Request) -> JSONResponse:
        with activity:
            return await handle(request)

    async def handle(request: Request) -> JSONResponse:
        source = request.path_params["source"]
        try:
            if source not in SOURCES:
                raise _Refused(404, f"unknown alert source; use one of {sorted(SOURCES)}")
            authorization = request.headers.get("authorization")
            if authorization:  # checked before the body is read: a wrong token costs nothing
                check_bearer(authorization)
            body = await _read_capped(request, max_body_bytes)
            if not authorization:
                check_signature(request, body)
            signals = parse_alerts(source, body)
            # Inline on purpose: a short SQLite/PostgreSQL insert costs less than a hop to a
            # worker thread and back, and hops are what stretched the tail under load.
            stored = store(signals)
            known = models()
        except _Refused as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except AlertPayloadError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except RegistryError as exc:
            log.error("alert not stored: %s", exc)
            return JSONResponse({"error": "alert inbox unavailable; retry"}, status_code=503)
        for record, created in stored:
            if created or record.state == "received":
                dispatcher.submit(record)
        return JSONResponse(_answer(stored, known), status_code=202)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(dispatcher.start)
        try:
            yield
        finally:
            await run_in_threadpool(dispatcher.stop)

    app = Starlette(
        routes=[
            Route("/alerts/{source}", receive, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.dispatcher = dispatcher
    return app


def _answer(
    stored: list[tuple[AlertRecord, bool]], known: Mapping[str, PipelineSummary]
) -> dict[str, Any]:
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
            raise _Refused(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise _Refused(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refused(413, f"body larger than {limit} bytes")
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
