"""A retrain on data bigger than memory: wall time per stage and peak RSS against 4 GiB.

Generates (or reuses, from ``--data-dir``) a Parquet table of the loan simulator's rows, then
runs the loan-default pipeline's own steps in a child process: snapshot + holdout split
(streamed), contract validation (streamed), training (streamed row groups, candidate
registered), gate (on a seeded holdout sample). The child's peak RSS (``ru_maxrss``) is the
figure that counts. The baseline is the in-memory path (the same steps on a loaded frame) at
a size that fits, with its peak RSS and training rows/s.

    python bench/retrain_big.py                    # 20M rows streamed, 1M rows baseline
    python bench/retrain_big.py --rows 5000000 --baseline-rows 1000000 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

TARGET_RSS_GIB = 4.0
CHUNK_ROWS = 1_048_576
_RESULT = "RESULT "


def generate(path: Path, rows: int, seed: int = 0) -> float:
    """Write ``rows`` simulated loan rows to ``path`` a chunk at a time (snapshot row groups);
    seconds taken, 0 when the file is already there with that many rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.data.simulator import DEFAULT_START, simulate
    from tasks.data.snapshots import ROW_GROUP_ROWS
    from tasks.data.sources import EVENT_TIME

    if path.is_file() and pq.ParquetFile(path).metadata.num_rows == rows:
        return 0.0
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    writer: Any = None
    start, done, chunk_no = DEFAULT_START, 0, 0
    while done < rows:
        n = min(CHUNK_ROWS, rows - done)
        frame = simulate(n, seed=seed * 100_003 + chunk_no, start=start)
        start = frame[EVENT_TIME].iloc[-1].to_pydatetime() + timedelta(seconds=1)
        table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
        if writer is None:
            writer = pq.ParquetWriter(partial, table.schema, compression="zstd")
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        done, chunk_no = done + n, chunk_no + 1
    writer.close()
    partial.replace(path)
    return time.perf_counter() - started


def child(path: Path, mode: str, budget_mb: int, epochs: int) -> None:
    """One retrain of ``path`` through the pipeline's steps; prints the stages as JSON."""
    from registry.errors import DataValidationError
    from retrain.config.settings import Settings
    from retrain.config.specs import DEFAULT_SPECS_DIR, load_spec
    from retrain.config.wiring import build_registry
    from tasks.data.sources import load_frame
    from tasks.data.streaming import LargeTable, batch_rows_for, parquet_rows
    from tasks.pipeline.steps import check_contract, gate_candidate, prepare_data, train_candidate
    from tasks.training.plan import TrainingRun

    plan = load_spec(DEFAULT_SPECS_DIR / "loan-default.yaml").plan
    plan = replace(plan, training=plan.training.with_fitting(max_epochs=epochs))
    stages: dict[str, float] = {}
    home = Path(tempfile.mkdtemp(prefix="retrain-big-"))
    registry = build_registry(Settings(home=home, memory_budget_mb=budget_mb))

    def timed(name: str, fn: Any, *args: Any, **kw: Any) -> Any:
        started = time.perf_counter()
        out = fn(*args, **kw)
        stages[name] = time.perf_counter() - started
        return out

    if mode == "stream":
        import pyarrow.parquet as pq

        columns = len(pq.ParquetFile(path).schema_arrow.names)
        data: Any = LargeTable(path, batch_rows_for(budget_mb, columns), path.stat().st_size)
    else:
        data = timed("load", load_frame, str(path))
    prepared = timed("snapshot+split", prepare_data, registry, plan, data)
    verdict = "passed"
    try:
        timed("validate", check_contract, registry, plan, data, prepared)
    except DataValidationError as exc:  # reported, not fatal: the bench measures the stages
        verdict = f"failed: {exc}"[:120]
        stages["validate"] = stages.get("validate", float("nan"))
    if mode != "stream":
        del data
    run = TrainingRun(
        checkpoint_root=home / "checkpoints",
        memory_budget_mb=budget_mb,
        streaming=mode == "stream",
    )
    result = timed("train+register", train_candidate, registry, plan, prepared, run)
    decision = timed(
        "gate", gate_candidate, registry, plan, result.version, prepared.holdout.digest,
        against=None,
    )  # fmt: skip
    train_rows = prepared.training.rows
    print(
        _RESULT
        + json.dumps(
            {
                "mode": mode,
                "rows": parquet_rows(path),
                "train_rows": train_rows,
                "stages": stages,
                "epochs": result.epochs,
                "data_path": result.lineage.get("data_path", "in-memory"),
                "val_metrics": {k: round(v, 4) for k, v in result.metrics.items()},
                "validation": verdict,
                "gate": decision.log_line,
                "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        ),
        flush=True,
    )
    registry.close()
    shutil.rmtree(home, ignore_errors=True)  # the snapshots: gigabytes at 20M rows


def run_child(path: Path, mode: str, budget_mb: int, epochs: int) -> dict[str, Any]:
    """The child's result, its wall time, and its peak RSS as the parent sees it."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--path", str(path),
         "--budget-mb", str(budget_mb), "--epochs", str(epochs)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith(_RESULT)]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{mode} child failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len(_RESULT) :])
    result["wall_s"] = wall
    return result


def report(result: dict[str, Any]) -> None:
    gib = result["peak_rss_kib"] / 2**20
    train_s = result["stages"]["train+register"]
    rate = result["train_rows"] * result["epochs"] / train_s if train_s else float("nan")
    print(
        f"\n{result['mode']}: {result['rows']:,} rows ({result['train_rows']:,} training), "
        f"{result['epochs']} epoch(s), data path {result['data_path']}"
    )
    for name, seconds in result["stages"].items():
        print(f"  {name:<16} {seconds:9.1f} s")
    print(f"  {'child total':<16} {result['wall_s']:9.1f} s")
    ok = "within" if gib <= TARGET_RSS_GIB else "OVER"
    print(f"  peak RSS         {gib:9.2f} GiB  ({ok} the {TARGET_RSS_GIB:g} GiB target)")
    print(f"  training         {rate:12,.0f} rows/s (train+register stage)")
    print(f"  validation       {result['validation']}")
    print(f"  val metrics      {result['val_metrics']}")
    print(f"  {result['gate']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--baseline-rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--budget-mb", type=int, default=1024, help="RETRAIN_MEMORY_BUDGET_MB")
    parser.add_argument("--data-dir", type=Path, default=Path(".retrain/bench-data"))
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--child", choices=("stream", "memory"), help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.path, args.child, args.budget_mb, args.epochs)
        return
    print(f"retrain on big data: cpus={os.cpu_count()}, budget {args.budget_mb} MiB")
    runs = [("stream", args.rows)] + (
        [] if args.skip_baseline else [("memory", args.baseline_rows)]
    )
    for mode, rows in runs:
        path = args.data_dir / f"loans-{rows}.parquet"
        seconds = generate(path, rows)
        made = f"generated in {seconds:.1f} s" if seconds else "reused"
        print(f"data: {path} ({rows:,} rows, {path.stat().st_size / 2**20:,.0f} MiB, {made})")
        report(run_child(path, mode, args.budget_mb, args.epochs))


if __name__ == "__main__":
    main()
