"""Orchestration benchmarks: webhook acknowledgement, alert -> flow run, flow overhead.

    python bench/orchestration.py [--quick]

1. Webhook acknowledgement: the alert receiver runs under uvicorn in its own process on a
   loopback port (SQLite registry, the real inbox). An open-loop load generator sends
   Alertmanager notifications at a fixed rate (500/s) over keep-alive connections, half
   bearer-authenticated, half HMAC-signed, each a new alert over 10 models. Latency is
   measured from each request's *scheduled* send time to its full answer, so a stalled server
   cannot hide queueing. Baseline, same run: the same load against a bare ASGI route that
   answers 202 without auth, parsing or storage, on the same server stack.
2. Alert -> flow run created: a temporary Prefect API (the test harness server) with the
   retrain deployment applied per model; one alert per model is sent and Prefect is polled
   until the flow run exists. Baseline: ``run_deployment`` called directly.
3. Retrain flow against its functions called directly: ``bench_flow_overhead()``.
4. A locked registry database: another connection holds SQLite's write lock (``BEGIN
   IMMEDIATE``) while alerts arrive at once; each must get its 503 after the receiver's store
   bound (``STORE_TIMEOUT_S``) while ``/healthz`` is probed back to back. Baselines, same run
   and server: the same alerts and probes with the database free.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TOKEN = "bench-token"
SECRET = "bench-secret"
MODELS = [f"bench-model-{i}" for i in range(10)]


# -- the server side (runs in a child process) --------------------------------------------------
def _serve(home: str, port: int, mode: str) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from retrain.alerts.launchers import PrefectLauncher, RecordingLauncher
    from retrain.alerts.receiver import create_app
    from retrain.config.settings import Settings
    from retrain.config.wiring import build_registry

    if mode == "bare":

        async def accept(request: Request) -> JSONResponse:
            await request.body()
            return JSONResponse({"alerts": []}, status_code=202)

        app: Any = Starlette(routes=[Route("/alerts/{source}", accept, methods=["POST"])])
    else:
        registry = build_registry(Settings(home=Path(home)))
        launcher = PrefectLauncher() if mode == "prefect" else RecordingLauncher()
        app = create_app(registry, launcher, token=TOKEN, hmac_secret=SECRET)
    uvicorn.run(_Timed(app), host="127.0.0.1", port=port, log_level="warning", access_log=False)


class _Timed:
    """Server-side time of each POST (ASGI call to its end); ``GET /bench/times`` hands them
    over and starts afresh, so the client can tell handling from queueing."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.times: list[float] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/bench/times":
            body = json.dumps(self.times).encode()
            self.times = []
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        started = time.perf_counter()
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.times.append((time.perf_counter() - started) * 1000.0)


def _handle_times(port: int) -> list[float]:
    import httpx

    times: list[float] = httpx.get(f"http://127.0.0.1:{port}/bench/times", timeout=10).json()
    return times


def _start_server(home: Path, mode: str, env: dict[str, str] | None = None) -> tuple[Any, int]:
    port = _free_port()
    cmd = [sys.executable, __file__, "--serve", str(home), str(port), mode]
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"server ({mode}) exited with {proc.returncode}") from None
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server ({mode}) did not start")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _register_models(home: Path, models: list[str]) -> list[Any]:
    from retrain.config.settings import Settings
    from retrain.config.spec_store import register_spec
    from retrain.config.specs import DEFAULT_SPECS_DIR, load_spec
    from retrain.config.wiring import build_registry

    base = load_spec(DEFAULT_SPECS_DIR / "loan-default.yaml")
    registry = build_registry(Settings(home=home))
    specs = [base.model_copy(update={"name": name}) for name in models]
    for spec in specs:
        register_spec(registry, spec)
    registry.close()
    return specs


# -- the load generator -------------------------------------------------------------------------
def _requests(count: int) -> list[bytes]:
    """Raw HTTP/1.1 requests: distinct Alertmanager alerts, half bearer, half HMAC-signed."""
    from retrain.alerts.auth import sign_body

    now = time.time()
    out = []
    for i in range(count):
        body = json.dumps(
            {
                "version": "4",
                "groupKey": '{}:{alertname="FeatureDrift"}',
                "status": "firing",
                "receiver": "retrain",
                "alerts": [
                    {
                        "status": "firing",
                        "labels": {"alertname": "FeatureDrift", "model": MODELS[i % len(MODELS)]},
                        "annotations": {"summary": "feature drift"},
                        "fingerprint": f"bench-{now}-{i}",
                    }
                ],
            }
        ).encode()
        if i % 2:
            auth = "".join(f"{k}: {v}\r\n" for k, v in sign_body(SECRET, body, now).items())
        else:
            auth = f"Authorization: Bearer {TOKEN}\r\n"
        head = (
            f"POST /alerts/alertmanager HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def _open_loop(port: int, requests: list[bytes], rate: float) -> tuple[list[float], int]:
    """Send ``requests`` at ``rate``/s; latency (ms) from scheduled time to the full answer."""
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(16):
        idle.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + 0.05

    async def one(i: int, request: bytes) -> None:
        nonlocal errors
        scheduled = start + i / rate
        conn = await idle.get() if not idle.empty() else await _connect(port)
        reader, writer = conn
        writer.write(request)
        status = await _read_response(reader)
        latencies.append((time.perf_counter() - scheduled) * 1000.0)
        errors += status != 202
        idle.put_nowait(conn)

    tasks = []
    for i, request in enumerate(requests):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, request)))
    await asyncio.gather(*tasks)
    while not idle.empty():
        idle.get_nowait()[1].close()
    return latencies, errors


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def bench_webhook_ack(*, rate: float, seconds: float) -> None:
    """Acknowledgement latency of the receiver at ``rate`` alerts/s, against a bare route."""
    count = int(rate * seconds)
    requests = _requests(count + 200)
    results: dict[str, tuple[list[float], int]] = {}
    cpu_ms: dict[str, float | None] = {}
    handled: dict[str, list[float]] = {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        _register_models(home, MODELS)
        for mode in ("bare", "receiver"):
            proc, port = _start_server(home, mode)
            try:
                asyncio.run(_open_loop(port, requests[:200], rate))  # warm-up
                _handle_times(port)
                cpu_start = _cpu_seconds(proc.pid)
                results[mode] = asyncio.run(_open_loop(port, requests[200:], rate))
                cpu_end = _cpu_seconds(proc.pid)
                handled[mode] = _handle_times(port)
                if cpu_start is not None and cpu_end is not None:
                    cpu_ms[mode] = (cpu_end - cpu_start) * 1000.0 / count
            finally:
                proc.terminate()
                proc.wait(10)
    print(
        f"webhook ack at {rate:.0f} alerts/s, {count} alerts, loopback, 2 processes "
        f"(load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs):"
    )
    for mode, (lat, errors) in results.items():
        cpu = cpu_ms.get(mode)
        cpu_text = f"  server CPU {cpu:.2f} ms/alert" if cpu is not None else ""
        print(
            f"  {mode:9s} p50 {_pct(lat, 50):6.2f} ms  p95 {_pct(lat, 95):6.2f} ms  "
            f"p99 {_pct(lat, 99):6.2f} ms  max {max(lat):7.2f} ms  non-202: {errors}{cpu_text}"
        )
        inside = handled.get(mode)
        if inside:
            print(
                f"  {'':9s} server side (ASGI call): p50 {_pct(inside, 50):6.2f} ms  "
                f"p95 {_pct(inside, 95):6.2f} ms  p99 {_pct(inside, 99):6.2f} ms  "
                f"max {max(inside):7.2f} ms"
            )
    p99 = _pct(results["receiver"][0], 99)
    ratio = p99 / _pct(results["bare"][0], 99)
    verdict = "meets" if p99 <= 20.0 else "MISSES"
    print(f"  receiver p99 / bare p99 = {ratio:.2f}x; target p99 <= 20 ms: {verdict}")
    receiver_cpu = cpu_ms.get("receiver")
    if receiver_cpu:
        print(
            f"  receiver capacity ~{1000.0 / receiver_cpu:.0f} alerts/s per free core "
            f"({rate * receiver_cpu / 10.0:.0f}% of a core at {rate:.0f}/s)"
        )


def bench_alert_to_run(*, samples: int) -> None:
    """Time from an alert's POST to its Prefect flow run existing, against run_deployment."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from retrain.deployments import build_deployments, deployment_names

    models = [f"run-model-{i}" for i in range(samples)]
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=90):
        home = Path(tmp) / "home"
        specs = _register_models(home, models)
        ids = {spec.name: UUID(str(build_deployments(spec)[0].apply())) for spec in specs}
        env = {"PREFECT_API_URL": str(PREFECT_API_URL.value())}
        proc, port = _start_server(home, "prefect", env)
        alert_ms: list[float] = []
        direct_ms: list[float] = []
        try:
            with (
                httpx.Client(base_url=f"http://127.0.0.1:{port}") as http,
                get_client(sync_client=True) as client,
            ):
                for i, model in enumerate(models):
                    body = json.dumps({"model": model, "reason": "bench"}).encode()
                    headers = {"Authorization": f"Bearer {TOKEN}"}
                    sent = time.perf_counter()
                    assert (
                        http.post("/alerts/generic", content=body, headers=headers).status_code
                        == 202
                    )
                    flt = DeploymentFilter(id=DeploymentFilterId(any_=[ids[model]]))
                    while not client.read_flow_runs(deployment_filter=flt, limit=1):
                        if time.perf_counter() - sent > 30:
                            raise SystemExit(f"no flow run for {model} after 30 s")
                        time.sleep(0.005)
                    alert_ms.append((time.perf_counter() - sent) * 1000.0)
                    start = time.perf_counter()
                    run_deployment(
                        deployment_names(model).retrain_full,
                        parameters={"pipeline": model, "trigger": "bench"},
                        timeout=0,
                        as_subflow=False,
                        idempotency_key=f"bench-direct-{i}",
                    )
                    direct_ms.append((time.perf_counter() - start) * 1000.0)
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"alert -> flow run created ({samples} alerts, one per model, Prefect test server):")
    print(
        f"  via receiver    p50 {statistics.median(alert_ms):7.1f} ms  "
        f"p95 {_pct(alert_ms, 95):7.1f} ms  max {max(alert_ms):7.1f} ms"
    )
    print(
        f"  run_deployment  p50 {statistics.median(direct_ms):7.1f} ms  "
        f"p95 {_pct(direct_ms, 95):7.1f} ms  max {max(direct_ms):7.1f} ms"
    )
    p95 = _pct(alert_ms, 95)
    verdict = "meets" if p95 <= 2000.0 else "MISSES"
    ratio = p95 / _pct(direct_ms, 95)
    print(f"  receiver p95 / run_deployment p95 = {ratio:.2f}x; target p95 <= 2 s: {verdict}")


def bench_locked_database(*, alerts: int) -> None:
    """Time to a 503 with the database locked, and /healthz latency meanwhile; baselines from
    the same server: the same alerts with the database free, and /healthz while idle."""
    import sqlite3

    import httpx

    from retrain.alerts.receiver import STORE_TIMEOUT_S

    bodies = [body.split(b"\r\n\r\n", 1)[1] for body in _requests(3 * alerts)]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        _register_models(home, MODELS)
        proc, port = _start_server(home, "receiver")
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                _alerts_and_probes(http, bodies[:alerts], headers, 0)  # warm-up
                free_s, free_codes, _ = _alerts_and_probes(http, bodies[alerts:-alerts], headers, 0)
                holder = sqlite3.connect(home / "registry.db", isolation_level=None)
                holder.execute("BEGIN IMMEDIATE")  # another process's long write
                try:
                    lock_s, lock_codes, busy = _alerts_and_probes(
                        http, bodies[-alerts:], headers, 50
                    )
                finally:
                    holder.rollback()
                    holder.close()
                _, _, idle = _alerts_and_probes(http, [], headers, len(busy))
        finally:
            proc.terminate()
            proc.wait(10)
    print(
        f"registry database locked by another connection, {alerts} alerts at once "
        f"(store bound {STORE_TIMEOUT_S:g} s, SQLite busy timeout 30 s):"
    )
    for name, seconds, codes in (("locked", lock_s, lock_codes), ("free", free_s, free_codes)):
        print(
            f"  {name:6s} answers {sorted(set(codes))}  p50 {statistics.median(seconds):7.3f} s  "
            f"max {max(seconds):7.3f} s"
        )
    print(f"  locked: last 503 at {max(lock_s) / STORE_TIMEOUT_S:.3f}x the store bound")
    for name, probes in (("alerts wait on the lock", busy), ("idle, database free", idle)):
        print(
            f"  /healthz, {name:23s} {len(probes):5d} probes  p50 {_pct(probes, 50):6.2f} ms  "
            f"p99 {_pct(probes, 99):6.2f} ms  max {max(probes):6.2f} ms"
        )
    print(f"  /healthz p99 while locked / idle = {_pct(busy, 99) / _pct(idle, 99):.2f}x")


def _alerts_and_probes(
    http: Any, bodies: list[bytes], headers: dict[str, str], at_least: int
) -> tuple[list[float], list[int], list[float]]:
    """Post ``bodies`` at once and probe /healthz back to back until all are answered (and
    ``at_least`` probes are done): seconds to each answer, statuses, probe latencies (ms)."""
    from concurrent.futures import ThreadPoolExecutor

    def post(body: bytes) -> tuple[float, int]:
        started = time.perf_counter()
        status: int = http.post("/alerts/alertmanager", content=body, headers=headers).status_code
        return time.perf_counter() - started, status

    probes: list[float] = []
    with ThreadPoolExecutor(max(1, len(bodies))) as pool:
        pending = [pool.submit(post, body) for body in bodies]
        while not all(p.done() for p in pending) or len(probes) < at_least:
            started = time.perf_counter()
            http.get("/healthz")
            probes.append((time.perf_counter() - started) * 1000.0)
        answers = [p.result() for p in pending]
    return [a[0] for a in answers], [a[1] for a in answers], probes


def bench_flow_overhead(*, quick: bool) -> None:
    """Retrain flow vs its plain functions on the same rows (see bench/bench_flow.py)."""
    from bench_flow import bench_flow_overhead as run

    run(quick=quick)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument(
        "--serve", nargs=3, metavar=("HOME", "PORT", "MODE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.serve:
        home, port, mode = args.serve
        _serve(home, int(port), mode)
        return
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    steps: list[tuple[str, Callable[[], None]]] = [
        ("ack", lambda: bench_webhook_ack(rate=500.0, seconds=2.0 if args.quick else 10.0)),
        ("run", lambda: bench_alert_to_run(samples=5 if args.quick else 20)),
        ("flow", lambda: bench_flow_overhead(quick=args.quick)),
        ("locked", lambda: bench_locked_database(alerts=5 if args.quick else 20)),
    ]
    for _, step in steps:
        started = time.perf_counter()
        step()
        print(f"  ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
