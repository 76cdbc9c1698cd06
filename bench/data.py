"""Data gates on a table larger than memory: streamed snapshot, validation and drift vs in-memory.

Generates (once, cached under ``--data-dir``) a seeded loans table of ``--rows`` rows as
Parquet, written chunk by chunk, plus a covariate-shifted twin as the "current" data. Then
each phase runs in its own child process, so its peak RSS (``ru_maxrss`` from ``wait4``) is its
own: the streamed snapshot, validation and drift of the full table with batches sized by the
memory budget, and the in-memory path (load, ``take_snapshot``, ``validate_frame``,
``detect_drift``) on ``--baseline-rows`` rows, the size that fits. Rates are rows/s; the ratio
line compares the two paths in this run. Drift renders no HTML report on either path.

    python bench/data.py                   # 20M rows (~3 GB of frames), baseline at 1M
    python bench/data.py --rows 5000000
    python bench/data.py --quick           # 1M rows, baseline at 1M
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

CHUNK_ROWS = 1_000_000
TARGET_S = 60.0
TARGET_RSS_MIB = 4096


def generate(path: Path, rows: int, scenario: str, seed: int) -> float:
    """Write ``rows`` simulated loans to ``path`` in chunks (skipped when cached)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.data.simulator import simulate

    if path.is_file():
        return 0.0
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    writer: Any = None
    base = datetime(2025, 1, 1, tzinfo=UTC)
    for index, start in enumerate(range(0, rows, CHUNK_ROWS)):
        n = min(CHUNK_ROWS, rows - start)
        frame = simulate(
            n, scenario=scenario, seed=seed + index, start=base + timedelta(days=7 * index)
        )
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(partial, table.schema, compression="zstd")
        writer.write_table(table, row_group_size=CHUNK_ROWS)
    writer.close()
    partial.rename(path)
    return time.perf_counter() - started


def phase(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one phase in this process; its timing and figures."""
    from registry.store import Registry
    from retrain.config.specs import DEFAULT_SPECS_DIR, load_spec
    from tasks.data.stream_io import MIN_BATCH_ROWS
    from tasks.data.stream_parallel import validate_parquet
    from tasks.data.streaming import (
        batch_rows_for,
        drift_streaming,
        parquet_rows,
        snapshot_parquet,
        snapshot_path,
        validation_workers,
    )
    from tasks.data.validation import load_suite

    spec = load_spec(DEFAULT_SPECS_DIR / "loan-default.yaml")
    suite = load_suite(str(spec.dataset.contract))
    data = Path(args.data_dir)
    home = data / "registry"
    registry = Registry.open(f"sqlite:///{home / 'registry.db'}", (home / "blobs").as_uri())
    batch = batch_rows_for(args.budget_mb, 20)
    stable, shifted = data / f"stable-{args.rows}.parquet", data / f"shift-{args.rows}.parquet"
    small, small_shift = (
        data / f"stable-{args.baseline_rows}.parquet",
        data / f"shift-{args.baseline_rows}.parquet",
    )
    started = time.perf_counter()
    out: dict[str, Any] = {"batch_rows": batch}
    if name == "snapshot":
        snap = snapshot_parquet(registry, "bench", stable, batch_rows=batch, spool_dir=data)
        out |= {"rows": snap.rows, "digest": snap.digest}
    elif name == "validate":
        workers = validation_workers()  # each worker holds its share of the budget
        result, peaks = validate_parquet(
            snapshot_path(registry, args.digest),
            suite,
            batch_rows=max(MIN_BATCH_ROWS, batch // workers),
            workers=workers,
        )
        note = f"ok={result.success}, {workers} workers, RSS summed over processes"
        out |= {"rows": result.rows, "note": note, "rss_kib": sum(peaks)}
    elif name == "drift":
        drift = drift_streaming(
            registry, args.digest, shifted, spec.drift, batch_rows=batch, render=False
        )
        out |= {
            "rows": parquet_rows(shifted),
            "note": f"drifted={drift.drifted} share={drift.drifted_share:.2f}",
        }
    else:  # the in-memory path on the small table: load, snapshot, validate, drift
        from tasks.data.drift import detect_drift
        from tasks.data.snapshots import take_snapshot
        from tasks.data.sources import load_frame
        from tasks.data.validation import validate_frame

        frame = load_frame(small)
        kind = name.removeprefix("memory-")
        started = time.perf_counter()
        if kind == "snapshot":
            take_snapshot(registry, "bench-small", frame)
            out["note"] = "load excluded"
        elif kind == "validate":
            out["note"] = f"ok={validate_frame(frame, suite, raise_on_failure=False).success}"
        else:
            current = load_frame(small_shift)
            started = time.perf_counter()
            drift = detect_drift(frame, current, spec.drift, render=False)
            out["note"] = f"drifted={drift.drifted} share={drift.drifted_share:.2f}"
        out["rows"] = len(frame)
    out["seconds"] = time.perf_counter() - started
    return out


def in_child(name: str, args: argparse.Namespace, digest: str = "") -> dict[str, Any]:
    """Run ``name`` in a child process; its figures plus its own peak RSS in MiB."""
    command = [sys.executable, __file__, "--phase", name, "--data-dir", str(args.data_dir)]
    command += ["--rows", str(args.rows), "--baseline-rows", str(args.baseline_rows)]
    command += ["--budget-mb", str(args.budget_mb), "--digest", digest]
    child = subprocess.Popen(command, stdout=subprocess.PIPE)
    assert child.stdout is not None
    text = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"phase {name} failed with exit code {child.returncode}")
    result: dict[str, Any] = json.loads(text.decode().strip().splitlines()[-1])
    # Linux reports KiB; a phase with worker processes reports their sum (an upper bound).
    result["rss_mib"] = max(usage.ru_maxrss, result.get("rss_kib", 0)) / 1024
    return result


def line(what: str, figures: dict[str, Any], target: str = "") -> float:
    rows, seconds = figures["rows"], figures["seconds"]
    rate = float(rows / seconds)
    print(
        f"{what:<30} {rows:>11,} rows {seconds:>8.1f} s {rate:>11,.0f} rows/s "
        f"peak RSS {figures['rss_mib']:>7,.0f} MiB  {figures.get('note', '')} {target}".rstrip()
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--quick", action="store_true", help="1M rows")
    parser.add_argument("--baseline-rows", type=int, default=1_000_000)
    parser.add_argument("--data-dir", type=Path, default=Path(".retrain/bench-data"))
    parser.add_argument("--budget-mb", type=int, default=1024, help="RETRAIN_MEMORY_BUDGET_MB")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--digest", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rows = 1_000_000
    args.baseline_rows = min(args.baseline_rows, args.rows)
    if args.phase:
        print(json.dumps(phase(args.phase, args)))
        return
    data = Path(args.data_dir)
    print(f"data gates, cpus={os.cpu_count()}, budget {args.budget_mb} MiB, data in {data}")
    for rows in sorted({args.rows, args.baseline_rows}):
        for scenario, seed in (("stable", 1), ("shift", 2)):
            name = "covariate_shift" if scenario == "shift" else "stable"
            took = generate(data / f"{scenario}-{rows}.parquet", rows, name, seed * 1_000)
            if took:
                print(f"generated {scenario}-{rows}.parquet in {took:.1f} s")
    shutil.rmtree(data / "registry", ignore_errors=True)  # each run stores its snapshot afresh
    (data / "registry").mkdir(parents=True)
    snap = in_child("snapshot", args)
    print(f"--- streamed, {args.rows:,} rows, batches of {snap['batch_rows']:,} rows")
    rates = {"snapshot": line("snapshot (streamed)", snap)}
    target = f"target <= {TARGET_S:.0f} s, <= {TARGET_RSS_MIB} MiB"
    rates["validate"] = line(
        "validate (streamed)", in_child("validate", args, snap["digest"]), target
    )
    rates["drift"] = line(
        "drift (streamed, 50k samples)", in_child("drift", args, snap["digest"]), target
    )
    print(f"--- in memory, {args.baseline_rows:,} rows (baseline)")
    for kind in ("snapshot", "validate", "drift"):
        base = line(f"{kind} (in memory)", in_child(f"memory-{kind}", args))
        print(f"{'':<30} streamed / in-memory rate: {rates[kind] / base:.2f}x")


if __name__ == "__main__":
    main()
