"""A traffic driver: replays simulator rows against a model server at a set rate, on loopback.

Requests are sent open-loop (on a fixed schedule, not waiting for answers) over lean keep-alive
loopback connections, with a sticky ``X-Request-Key`` per simulated user; the true label of each
answered request is sent back to ``:feedback`` (through httpx) after a delay, as a real system
would learn outcomes later. Bounded in request count and in time; refuses any host but this
machine.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from registry.errors import ConfigError, NotFoundError, ServingError
from retrain.local.loopback_http import LoopbackConnections, LoopbackHTTPError

__all__ = [
    "LOOPBACK_HOSTS",
    "ResponseRecord",
    "TrafficReport",
    "check_server",
    "drive_traffic",
    "traffic_rows",
]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_DURATION_S = 3600.0


@dataclass(frozen=True)
class ResponseRecord:
    """One request as the driver saw it (times relative to the driver's start)."""

    sent_s: float
    latency_s: float
    status: int
    version: int | None
    variant: str | None


@dataclass
class TrafficReport:
    """What the driver sent and what came back."""

    sent: int = 0
    ok: int = 0
    client_errors: int = 0
    server_errors: int = 0
    failed: int = 0  # no answer at all (connection refused, timeout)
    feedback_sent: int = 0
    duration_s: float = 0.0
    started_at: float = 0.0  # time.perf_counter() when the first request was due
    by_version: Counter[int] = field(default_factory=Counter)
    by_variant: Counter[str] = field(default_factory=Counter)
    records: list[ResponseRecord] = field(default_factory=list)

    @property
    def achieved_rps(self) -> float:
        return self.sent / self.duration_s if self.duration_s else 0.0

    def latency_quantile(self, q: float) -> float | None:
        """Client-side latency quantile in seconds over answered requests."""
        values = sorted(r.latency_s for r in self.records if r.status == 200)
        return values[min(len(values) - 1, int(q * len(values)))] if values else None


def traffic_rows(
    rows: int, *, scenario: str = "stable", seed: int = 0, label: str | None = None
) -> tuple[list[dict[str, Any]], list[float]]:
    """Feature dicts and labels of ``rows`` simulated applications."""
    from tasks.data.simulator import REGRESSION_TARGET, SCENARIOS, TARGET, simulate
    from tasks.data.sources import EVENT_TIME

    if scenario not in SCENARIOS:
        raise ConfigError(f"scenario {scenario!r} unknown: use one of {', '.join(SCENARIOS)}")
    frame = simulate(rows, scenario=scenario, seed=seed)
    label = label or TARGET
    if label not in (TARGET, REGRESSION_TARGET):
        raise ConfigError(f"label {label!r} unknown: use {TARGET} or {REGRESSION_TARGET}")
    labels = [float(v) for v in frame[label].to_numpy()]
    features = frame.drop(
        columns=[c for c in (EVENT_TIME, TARGET, REGRESSION_TARGET) if c in frame]
    )
    return features.to_dict("records"), labels


def _check_loopback(base_url: str) -> None:
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018  (raises ValueError when out of range or not a number)
    except ValueError as exc:
        raise ConfigError(f"server URL {base_url!r}: {exc}; use http://127.0.0.1:PORT") from None
    if parts.scheme != "http" or parts.hostname is None:
        raise ConfigError(f"server URL {base_url!r}: use http://127.0.0.1:PORT")
    if parts.hostname not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"traffic only goes to this machine (127.0.0.1/localhost), not {parts.hostname!r}"
        )


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def check_server(
    base_url: str, model: str, *, token: str | None = None, timeout_s: float = 5.0
) -> None:
    """Fail fast, in one line, unless a model server answers at ``base_url`` and serves
    ``model``: a dead URL is a ``ServingError``, an unserved model a ``NotFoundError``."""
    _check_loopback(base_url)
    base = base_url.rstrip("/")
    try:
        response = httpx.get(
            f"{base}/v1/models/{quote(model, safe='')}", headers=_auth(token), timeout=timeout_s
        )
    except httpx.HTTPError as exc:
        raise ServingError(
            f"no model server answers at {base} ({exc or type(exc).__name__}): "
            "start `retrain serve` or pass --url"
        ) from None
    if response.status_code == 404:
        raise NotFoundError(f"model {model!r} is not served at {base}: see `retrain models ls`")
    if response.status_code != 200:
        raise ServingError(f"model server at {base} answered {response.status_code} for {model!r}")


class _Driver:
    """One run: requests on an open-loop schedule, their answers tallied, labels fed back."""

    def __init__(
        self,
        base_url: str,
        model: str,
        instances: list[dict[str, Any]],
        labels: list[float],
        *,
        rate: float,
        total: int,
        deadline_s: float,
        keys: int,
        feedback_delay_s: float | None,
        concurrency: int,
        keep_records: bool,
        stop: threading.Event | None,
        token: str | None = None,
    ) -> None:
        self.report = TrafficReport()
        self._auth = _auth(token)
        self._model, self._labels, self._rows = model, labels, len(instances)
        self._rate, self._total, self._deadline_s, self._stop = rate, total, deadline_s, stop
        self._keys, self._feedback_delay_s = keys, feedback_delay_s
        self._keep_records = keep_records
        self._pending: list[tuple[float, str, float]] = []  # (due time, request id, label)
        parts = urlsplit(base_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        self._pool = LoopbackConnections(host, port, limit=concurrency)
        self._client = httpx.AsyncClient(base_url=base_url, timeout=10.0, headers=self._auth)
        self._bodies = [json.dumps({"instances": [row]}).encode() for row in instances]
        self._path = f"/v1/models/{model}:predict"
        self._gate = asyncio.Semaphore(concurrency)
        self._start = 0.0

    async def run(self) -> TrafficReport:
        async with self._client:
            self._start = self.report.started_at = time.perf_counter()
            tasks = await self._send_all()
            if tasks:
                await asyncio.wait(tasks, timeout=15.0)
            await self._flush_feedback()
            self.report.duration_s = time.perf_counter() - self._start
        await self._pool.close()
        return self.report

    async def _send_all(self) -> set[asyncio.Task[None]]:
        """Request ``i`` is due at ``i / rate`` whether or not earlier ones were answered (open
        loop: a slow server meets the same load); due feedback goes out every 0.2 s."""
        tasks: set[asyncio.Task[None]] = set()
        next_feedback = 0.0
        for i in range(self._total):
            target = i / self._rate
            now = time.perf_counter() - self._start
            if now > self._deadline_s or (self._stop is not None and self._stop.is_set()):
                break
            if target > now:
                await asyncio.sleep(target - now)
            await self._gate.acquire()
            task = asyncio.create_task(self._request(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            self.report.sent += 1
            if now >= next_feedback:
                next_feedback = now + 0.2
                await self._send_feedback(final=False)
        return tasks

    async def _request(self, i: int) -> None:
        sent = time.perf_counter() - self._start
        row = i % self._rows
        try:
            status, raw = await self._pool.post(
                self._path,
                self._bodies[row],
                {"X-Request-Key": f"user-{i % self._keys}", **self._auth},
            )
        except LoopbackHTTPError:
            self.report.failed += 1
            return
        finally:
            self._gate.release()
        latency = time.perf_counter() - self._start - sent
        version, variant = self._tally(status, raw, row)
        if self._keep_records:
            self.report.records.append(ResponseRecord(sent, latency, status, version, variant))

    def _tally(self, status: int, raw: bytes, row: int) -> tuple[int | None, str | None]:
        """Count one answer; an answered request's true label is queued, due after the delay."""
        report = self.report
        if status != 200:
            if status < 500:
                report.client_errors += 1
            else:
                report.server_errors += 1
            return None, None
        body = json.loads(raw)
        version, variant = int(body["model_version"]), str(body["variant"])
        report.ok += 1
        report.by_version[version] += 1
        report.by_variant[variant] += 1
        if self._feedback_delay_s is not None:
            due = time.perf_counter() + self._feedback_delay_s
            self._pending.append((due, body["request_id"], self._labels[row]))
        return version, variant

    async def _send_feedback(self, *, final: bool) -> None:
        """Send the labels that are due (all of them if ``final``); a failed send is dropped."""
        now = time.perf_counter()
        due = [p for p in self._pending if final or p[0] <= now]
        if not due:
            return
        self._pending[:] = [p for p in self._pending if not (final or p[0] <= now)]
        items = [{"request_id": rid, "labels": [label]} for _, rid, label in due]
        try:
            await self._client.post(f"/v1/models/{self._model}:feedback", json={"feedback": items})
            self.report.feedback_sent += len(items)
        except httpx.HTTPError:
            pass

    async def _flush_feedback(self) -> None:
        """Wait for the last labels to fall due (at most one delay), then send them all."""
        if not self._pending:
            return
        wait = max(0.0, max(p[0] for p in self._pending) - time.perf_counter())
        await asyncio.sleep(min(wait, self._feedback_delay_s or 0.0))
        await self._send_feedback(final=True)


def drive_traffic(
    base_url: str,
    model: str,
    *,
    rate: float = 50.0,
    duration_s: float = 10.0,
    max_requests: int | None = None,
    scenario: str = "stable",
    seed: int = 0,
    label: str | None = None,
    keys: int = 1000,
    feedback_delay_s: float | None = 1.0,
    concurrency: int = 64,
    keep_records: bool = False,
    rows: tuple[list[dict[str, Any]], list[float]] | None = None,
    stop: threading.Event | None = None,
    token: str | None = None,
) -> TrafficReport:
    """Send ``rate`` single-row requests per second for ``duration_s`` (or ``max_requests``);
    ``token`` is the model server's bearer token, when it asks for one.

    ``feedback_delay_s=None`` sends no labels. ``rows`` reuses prepared (instances, labels);
    setting ``stop`` (from another thread) ends the run early.
    """
    _check_loopback(base_url)
    if rate <= 0 or duration_s <= 0:
        raise ConfigError("traffic rate and duration must be positive")
    if duration_s > MAX_DURATION_S:
        raise ConfigError(f"traffic duration is capped at {MAX_DURATION_S:g} s")
    total = max_requests if max_requests is not None else max(1, int(rate * duration_s))
    instances, labels = rows or traffic_rows(
        min(total, 50_000), scenario=scenario, seed=seed, label=label
    )

    async def drive() -> TrafficReport:
        # Built inside the loop that runs it: its semaphores and connections belong to it.
        driver = _Driver(
            base_url.rstrip("/"),
            model,
            instances,
            labels,
            rate=rate,
            total=total,
            deadline_s=duration_s,
            keys=max(1, keys),
            feedback_delay_s=feedback_delay_s,
            concurrency=concurrency,
            keep_records=keep_records,
            stop=stop,
            token=token,
        )
        return await driver.run()

    return asyncio.run(drive())
