"""Serving figures in one run, the model server in its own process (``retrain serve``):

1. predict p50/p95/p99 at 200 single-row requests per second on loopback, server side;
2. the router's overhead against calling the same bundle directly (the baseline);
3. rollback call -> 100% of new requests answered by the old version;
4. injected fault (5% errors on the canary) -> completed rollback, against 2 intervals + 1 s;
5. other callers' p99 while maximum-size requests (1000 instances, back to back) are served,
   against the same callers' p99 with no big request (the baseline), and the big request's cost.

    python bench/serving.py            # 15 s load window, 5 rollbacks, 1 s analysis interval
    python bench/serving.py --quick    # 4 s load window, 3 rollbacks, 0.5 s interval
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from registry.store import Registry
from retrain.config.settings import Settings
from retrain.config.wiring import build_registry
from retrain.local.traffic import TrafficReport, drive_traffic, traffic_rows
from retrain.testing_serving import register_test_bundle
from serving.follower import load_version
from tasks.release.canary import run_canary
from tasks.release.metric_sources import MetricsSnapshot, ServerStatsSource
from tasks.release.policy import CanaryPolicy
from tasks.release.rollback import rollback

MODEL = "loans"
RATE = 200.0
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.2f} ms"


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_server(
    home: Path, port: int, fault: str | None = None, model: str = MODEL
) -> subprocess.Popen[bytes]:
    """``retrain serve`` in a child process (with an injected ``fault`` if given), waited on
    until ready."""
    code = "import sys; from retrain.cli import main; sys.argv[0] = 'retrain'; main()"
    args = [sys.executable, "-c", code, "serve", "--model", model, "--port", str(port)]
    args += ["--poll-interval", "0.1", *(["--fault", fault] if fault else [])]
    env = {**os.environ, "RETRAIN_HOME": str(home)}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit("model server exited during start-up")
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("model server did not become ready")


def _drive(
    url: str, rows: Any, seconds: float, stop: threading.Event | None = None, rate: float = RATE
) -> Any:
    return drive_traffic(
        url, MODEL, rate=rate, duration_s=seconds, rows=rows, stop=stop, feedback_delay_s=None,
        keep_records=True,
    )  # fmt: skip


class Load:
    """Background open-loop single-row traffic at ``rate`` requests/s until stopped."""

    def __init__(self, url: str, rows: Any, seconds: float = 120.0, rate: float = RATE) -> None:
        self.stop = threading.Event()
        self.result: TrafficReport | None = None

        def run() -> None:
            self.result = _drive(url, rows, seconds, self.stop, rate)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def finish(self) -> TrafficReport:
        self.stop.set()
        self.thread.join(timeout=60)
        assert self.result is not None
        return self.result


def bench_latency(url: str, rows: Any, seconds: float) -> dict[str, Any]:
    _drive(url, rows, 1.5)  # warm up
    httpx.post(f"{url}/v1/models/{MODEL}:reset-latency")
    result = _drive(url, rows, seconds)
    stats = httpx.get(f"{url}/v1/models/{MODEL}:stats", params={"recent": 1}).json()
    server = next(s["recent_latency_s"] for s in stats["series"] if s["variant"] == "champion")
    return {"load": result, "server": server}


MAX_INSTANCES = 1000  # the default serve_max_instances: the largest request a caller may send


def bench_big_request(url: str, rows: Any, seconds: float, rounds: int = 4) -> dict[str, Any]:
    """Single-row callers at RATE, alternating windows with no big request (the baseline) and
    windows beside one caller sending maximum-size requests back to back, so both kinds of
    window see the same background load."""
    # Encoded once: the callers' latency is measured in this process, whose GIL encoding the
    # big body for every request would hold against them.
    body = json.dumps({"instances": rows[0][:MAX_INSTANCES]}).encode()
    took: list[float] = []
    quiet: list[float] = []
    busy: list[float] = []
    failed = 0

    def hammer(stop: threading.Event) -> None:
        headers = {"Content-Type": "application/json"}
        with httpx.Client(base_url=url, timeout=30, headers=headers) as client:
            while not stop.is_set():
                started = time.perf_counter()
                answer = client.post(f"/v1/models/{MODEL}:predict", content=body)
                assert answer.status_code == 200, answer.text
                took.append(time.perf_counter() - started)

    _drive(url, rows, 1.0)  # warm up
    for _ in range(rounds):
        quiet += [
            r.latency_s for r in _drive(url, rows, seconds / rounds).records if r.status == 200
        ]
        stop = threading.Event()
        thread = threading.Thread(target=hammer, args=(stop,), daemon=True)
        thread.start()
        time.sleep(0.2)  # the first big request is in flight before the callers start
        report = _drive(url, rows, seconds / rounds)
        stop.set()
        thread.join(timeout=60)
        busy += [r.latency_s for r in report.records if r.status == 200]
        failed += report.failed + report.server_errors + report.client_errors
    return {"quiet": quiet, "busy": busy, "took": took, "bytes": len(body), "failed": failed}


def bench_direct(registry: Registry, rows: Any, n: int) -> dict[str, float]:
    bundle = load_version(registry, MODEL, 1).bundle
    times: list[float] = []
    for i in range(n):
        started = time.perf_counter()
        bundle.predict([rows[0][i % len(rows[0])]])
        times.append(time.perf_counter() - started)
    return {q: _quantile(times, v) for q, v in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}


def _wait_version(url: str, rows: Any, version: int) -> None:
    with httpx.Client(base_url=url) as client:
        for _ in range(500):
            body = {"instances": [rows[0][0]]}
            if client.post(f"/v1/models/{MODEL}:predict", json=body).json()["model_version"] == (
                version
            ):
                return
            time.sleep(0.01)
    raise SystemExit(f"server never served v{version}")


def bench_rollback(registry: Registry, url: str, rows: Any, repeats: int) -> list[float]:
    """Seconds from the rollback call until no new request is answered by the new version."""
    took: list[float] = []
    for _ in range(repeats):
        current = registry.catalog.get_alias(MODEL, "champion")
        registry.catalog.set_alias(
            MODEL, "champion", 2, expected=current, reason="bench release", actor="bench"
        )
        _wait_version(url, rows, 2)
        load = Load(url, rows)
        time.sleep(1.0)
        called = time.perf_counter()
        rollback(registry, MODEL, 1, reason="bench rollback", actor="bench")
        time.sleep(1.5)
        result = load.finish()
        since = called - result.started_at
        late = [r.sent_s for r in result.records if r.version == 2 and r.sent_s >= since]
        assert result.failed == 0 and result.server_errors == 0
        took.append(max(late) - since if late else 0.0)
    return took


class RecordingSource(ServerStatsSource):
    """Server stats that note when the server first routed traffic to the canary."""

    exposed_at: float | None = None
    version = 3

    def snapshot(self, model: str) -> MetricsSnapshot:
        snap = super().snapshot(model)
        if self.exposed_at is None and (snap.routing or {}).get("canary") == self.version:
            self.exposed_at = time.perf_counter()
        return snap


def bench_fault(registry: Registry, url: str, rows: Any, interval: float) -> dict[str, Any]:
    policy = CanaryPolicy(interval_s=interval, min_requests=10, watch_windows=0)
    load = Load(url, rows)
    time.sleep(1.0)
    source = RecordingSource(url)
    outcome = run_canary(registry, MODEL, 3, policy, source, actor="bench")
    with httpx.Client(base_url=url) as client:
        while client.get(f"/v1/models/{MODEL}:stats").json()["routing"]["canary"] is not None:
            time.sleep(0.005)
    done = time.perf_counter()
    result = load.finish()
    assert source.exposed_at is not None
    return {
        "outcome": outcome,
        "took": done - source.exposed_at,
        "budget": 2 * interval + 1.0,
        "user_errors": result.failed + result.server_errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows, fewer repeats")
    args = parser.parse_args()
    seconds, repeats, interval = (4.0, 3, 0.5) if args.quick else (15.0, 5, 1.0)
    home = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    registry = build_registry(Settings(home=home))
    register_test_bundle(registry, MODEL, seed=0, champion=True)
    register_test_bundle(registry, MODEL, seed=0, tag="v2 retrain")
    register_test_bundle(registry, MODEL, seed=0, tag="v3 faulty")
    rows = traffic_rows(5000, seed=11)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(home, port, fault=f"{MODEL}:3:errors=0.05")
    try:
        latency = bench_latency(url, rows, seconds)
        big = bench_big_request(url, rows, seconds)
        direct = bench_direct(registry, rows, 2000 if not args.quick else 400)
        rollbacks = bench_rollback(registry, url, rows, repeats)
        fault = bench_fault(registry, url, rows, interval)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        registry.close()
    load: TrafficReport = latency["load"]
    server = latency["server"]
    print(f"serving benchmark ({'quick' if args.quick else 'full'}), server in its own process")
    print(
        f"  load: {load.sent} single-row requests at {load.achieved_rps:.0f} req/s "
        f"(target {RATE:.0f}), {load.failed + load.server_errors} failed"
    )
    print(
        f"  predict, server side   p50 {as_ms(server['p50'])}  p95 {as_ms(server['p95'])}  "
        f"p99 {as_ms(server['p99'])}   (target p95 <= 10 ms)"
    )
    print(
        f"  predict, client side   p50 {as_ms(load.latency_quantile(0.5))}  "
        f"p95 {as_ms(load.latency_quantile(0.95))}  p99 {as_ms(load.latency_quantile(0.99))}"
    )
    print(
        f"  model called directly  p50 {as_ms(direct['p50'])}  p95 {as_ms(direct['p95'])}  "
        f"p99 {as_ms(direct['p99'])}   (baseline)"
    )
    overhead = server["p50"] - direct["p50"]
    print(
        f"  router overhead        p50 +{overhead * 1000:.2f} ms; server/direct "
        f"p50 x{server['p50'] / direct['p50']:.2f}, p95 x{server['p95'] / direct['p95']:.2f}"
    )
    print(
        f"  rollback -> 100% old   median {as_ms(statistics.median(rollbacks))}  "
        f"max {as_ms(max(rollbacks))} over {len(rollbacks)}   (target <= 1000 ms; "
        f"x{max(rollbacks):.2f} of budget)"
    )
    outcome = fault["outcome"]
    print(
        f"  fault -> rolled back   {fault['took']:.2f} s over {len(outcome.steps)} window(s) of "
        f"{interval:g} s   (budget {fault['budget']:.2f} s; x{fault['took'] / fault['budget']:.2f}"
        f" of budget); {outcome.status}: {outcome.reason}; failed user requests "
        f"{fault['user_errors']}"
    )

    _print_big(big)


def _print_big(result: dict[str, Any]) -> None:
    q99, b99, took = (
        _quantile(result["quiet"], 0.99),
        _quantile(result["busy"], 0.99),
        result["took"],
    )
    print(
        f"  callers' p99 beside    {as_ms(b99)} ({len(result['busy'])} requests) while {len(took)} "
        f"requests of {MAX_INSTANCES} instances ({result['bytes'] / 1024:.0f} KiB) ran back to "
        f"back, vs {as_ms(q99)} ({len(result['quiet'])}) with none (baseline): x{b99 / q99:.2f}; "
        f"failed {result['failed']}; max-size request p50 {as_ms(_quantile(took, 0.5))}"
    )


if __name__ == "__main__":
    main()
