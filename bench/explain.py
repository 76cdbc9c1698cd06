"""Explain against predict in one run, the model server in its own process (``retrain serve``):
server-side p50/p95/p99 of ``:explain`` for one instance of the loan-default spec's 17
features (integrated gradients over the version's 64-row training background, 16 steps)
against ``:predict`` for the same instances, both paced the same way on loopback.

The model is trained here from the shipped spec's architecture on simulated loans (a few
seconds), so the bundle and its background are what a retrain stores.

    python bench/explain.py            # 10 s per window
    python bench/explain.py --quick    # 3 s per window
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.serving import as_ms, free_port, start_server
from retrain.config.settings import Settings
from retrain.config.specs import load_spec
from retrain.config.wiring import build_registry
from retrain.local.traffic import traffic_rows
from tasks.data.simulator import simulate
from tasks.training.fit import train_model
from tasks.training.plan import TrainingRun

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "retrain" / "pipelines" / "loan-default.yaml"
RATE = 50.0  # paced single-instance requests per second, one at a time
TARGET_P95_S = 0.020


def train(home: Path) -> str:
    """Train the shipped spec's model on simulated loans; its name."""
    spec = load_spec(SPEC)
    plan = spec.plan.training.with_fitting(max_epochs=3)
    registry = build_registry(Settings(home=home))
    try:
        run = TrainingRun(checkpoint_root=home / "checkpoints")
        version = train_model(registry, simulate(20_000, seed=1), plan, run).version
        registry.catalog.set_alias(
            plan.model, "champion", version, expected=None, reason="bench", actor="bench"
        )
    finally:
        registry.close()
    return plan.model


def drive(client: httpx.Client, path: str, rows: list[dict[str, Any]], seconds: float) -> int:
    """Single-instance requests to ``path`` at RATE for ``seconds``; how many failed."""
    failed, started = 0, time.perf_counter()
    for i in range(int(RATE * seconds)):
        time.sleep(max(0.0, started + i / RATE - time.perf_counter()))
        answer = client.post(path, json={"instances": [rows[i % len(rows)]]})
        failed += answer.status_code != 200
    return failed


def window(client: httpx.Client, model: str, verb: str, rows: Any, seconds: float) -> Any:
    """Server-side latency of ``verb`` over one clean window."""
    drive(client, f"/v1/models/{model}:{verb}", rows, 1.0)  # warm up
    client.post(f"/v1/models/{model}:reset-latency")
    failed = drive(client, f"/v1/models/{model}:{verb}", rows, seconds)
    stats = client.get(f"/v1/models/{model}:stats", params={"recent": 1}).json()
    if verb == "explain":
        return stats["explain"]["recent_latency_s"], failed
    series = next(s for s in stats["series"] if s["variant"] == "champion")
    return series["recent_latency_s"], failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows")
    args = parser.parse_args()
    seconds = 3.0 if args.quick else 10.0
    home = Path(tempfile.mkdtemp(prefix="bench-explain-"))
    model = train(home)
    rows = traffic_rows(2000, seed=11)[0]
    port = free_port()
    proc = start_server(home, port, model=model)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            sample = client.post(f"/v1/models/{model}:explain", json={"instances": rows[:1]})
            features = len(sample.json()["explanations"][0]["attributions"])
            background = sample.json()["background"]
            predict, predict_failed = window(client, model, "predict", rows, seconds)
            explain, explain_failed = window(client, model, "explain", rows, seconds)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"explain benchmark ({'quick' if args.quick else 'full'}), server in its own process")
    print(
        f"  one instance, {features} features, background {background}, "
        f"{RATE:.0f} req/s for {seconds:g} s each"
    )
    for name, stats, failed in (
        ("predict", predict, predict_failed),
        ("explain", explain, explain_failed),
    ):
        print(
            f"  {name}, server side   p50 {as_ms(stats['p50'])}  p95 {as_ms(stats['p95'])}  "
            f"p99 {as_ms(stats['p99'])}  ({stats['count']} requests, {failed} failed)"
        )
    ratio = explain["p95"] / predict["p95"]
    verdict = "ok" if explain["p95"] <= TARGET_P95_S else "OVER"
    print(
        f"  explain/predict p95 x{ratio:.1f}; explain p95 {as_ms(explain['p95'])} against "
        f"target <= {as_ms(TARGET_P95_S)}: {verdict}"
    )


if __name__ == "__main__":
    main()
