"""Data-gate throughput: simulate, snapshot, validate and drift at 100k and 1M rows.

Drift is measured twice on the same pair of frames in the same run: our path (Evidently on the
policy's seeded 50,000-row sample per side) and Evidently's ``DataDriftPreset`` on all rows, the
baseline. Budgets from the issue are printed beside each figure.

    python bench/data.py            # 100k and 1M rows (Evidently on 1M full rows takes minutes)
    python bench/data.py --quick    # 100k rows only
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from retrain.config.specs import DEFAULT_SPECS_DIR, load_spec
from tasks.data.drift import detect_drift
from tasks.data.simulator import simulate
from tasks.data.snapshots import to_parquet_bytes
from tasks.data.validation import validate_frame

# The loan-default pipeline's contract and drift policy (its features, its target).
LOANS = load_spec(DEFAULT_SPECS_DIR / "loan-default.yaml")
CONTRACT = LOANS.dataset.contract
POLICY = LOANS.drift
FULL = POLICY.model_copy(update={"sample_rows": None})


def best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of ``repeats`` timed calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def line(what: str, rows: int, seconds: float, note: str = "") -> None:
    print(f"{what:<34} {rows:>9,} rows {seconds:>8.3f} s {rows / seconds:>14,.0f} rows/s  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k rows only")
    args = parser.parse_args()
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    cols = len(simulate(10).columns)
    print(f"data gates, {cols} columns, cpus={os.cpu_count()}")
    # Warm-up: GX and Evidently import lazily and build caches on first use.
    validate_frame(simulate(2_000, seed=9), CONTRACT)
    detect_drift(simulate(2_000, seed=9), simulate(2_000, seed=10), POLICY, render=False)
    for rows in sizes:
        print(f"--- {rows:,} rows")
        t, frame = best_of(5, partial(simulate, rows, seed=1))
        line("simulate (stable)", rows, t, "budget >= 1,000,000 rows/s")
        t, _ = best_of(2, partial(to_parquet_bytes, frame))
        line("snapshot (deterministic parquet)", rows, t)
        t, result = best_of(3, partial(validate_frame, frame, CONTRACT))
        line("validate (GX, 63 expectations)", rows, t, f"budget <= 2 s at 1M; ok={result.success}")
        current = simulate(rows, scenario="covariate_shift", seed=2)
        ours_t, ours = best_of(1, partial(detect_drift, frame, current, POLICY))
        line(
            "drift, ours (50k seeded sample)",
            rows,
            ours_t,
            f"budget <= 15 s at 1M vs 1M; drifted={ours.drifted} share={ours.drifted_share:.2f}",
        )
        full_t, full = best_of(1, partial(detect_drift, frame, current, FULL))
        line(
            "drift, Evidently on all rows",
            rows,
            full_t,
            f"drifted={full.drifted} share={full.drifted_share:.2f}",
        )
        agree = "verdicts agree" if ours.drifted == full.drifted else "VERDICTS DIFFER"
        ratio = full_t / ours_t
        print(f"{'drift ratio (Evidently full / ours)':<34} {ratio:>9.1f}x faster; {agree}")


if __name__ == "__main__":
    main()
