"""The retrain flow against its plain functions called directly, on the same rows.

Both sides do the same work on a fresh registry each time: load the rows, snapshot them,
validate them with the Great Expectations suite, split off the holdout, train the model
(fixed epochs), gate it and crown it (a first model: no canary). The flow side runs
``flows.retrain_model.retrain_model`` against a temporary Prefect API (started before timing), so
the difference is what orchestration costs: task runs, state changes, artifacts, the
concurrency slot, the heartbeat thread.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL = "loan-default"


def _spec(source: str, epochs: int) -> Any:
    from retrain.config.specs import default_spec_paths, load_spec

    spec = load_spec(next(p for p in default_spec_paths() if p.stem == MODEL))
    return spec.model_copy(
        update={
            "dataset": spec.dataset.model_copy(update={"source": source}),
            # Fixed work on both sides: no early stop.
            "training": spec.training.model_copy(update={"max_epochs": epochs, "patience": 99}),
        }
    )


def _direct(home: Path, spec: Any) -> dict[str, Any]:
    """The flow's steps as plain function calls, in the flow's order."""
    from retrain.config.settings import Settings
    from retrain.config.wiring import build_metrics_source, build_registry, build_tracker
    from tasks.data.holdout import split_holdout
    from tasks.data.snapshots import load_frame, take_snapshot
    from tasks.data.validation import validate_and_record
    from tasks.gate.evaluate import evaluate_candidate
    from tasks.pipeline.runs import (
        champion_reference,
        find_completed_run,
        freeze_holdout,
        frozen_holdout,
        record_run,
        run_key,
        summarize_run,
    )
    from tasks.release.canary import run_canary
    from tasks.training.fit import train_model
    from tasks.training.lineage import code_lineage

    started = time.monotonic()
    settings = Settings(home=home)
    reg = build_registry(settings)
    try:
        frame = load_frame(spec.dataset.source)
        snapshot = take_snapshot(reg, spec.name, frame)
        validate_and_record(
            reg, frame, spec.dataset.contract, name=spec.name, dataset_digest=snapshot.digest
        )
        key = run_key(snapshot.digest, spec.digest, code_lineage()["code_digest"])
        assert find_completed_run(reg, spec.name, key) is None
        assert champion_reference(reg, spec.name) is None  # no drift step for a first model
        training, holdout = split_holdout(frame, spec.dataset.holdout_fraction)
        training_snap = take_snapshot(reg, f"{spec.name}-training", training)
        holdout_snap = take_snapshot(reg, f"{spec.name}-holdout", holdout)
        candidate = train_model(
            reg,
            training_snap.digest,
            model=spec.name,
            target=spec.target,
            task=spec.task,
            numeric=spec.features.numeric,
            categorical=spec.features.categorical,
            model_config=spec.model,
            training=spec.training,
            dataset_digest=training_snap.digest,
            lineage={"spec_digest": spec.digest},
            tracker=build_tracker(settings),
            checkpoint_root=home / "checkpoints",
        )
        gate_on = frozen_holdout(reg, spec.name) or holdout_snap.digest
        decision = evaluate_candidate(reg, spec.name, candidate.version, gate_on, spec.gate)
        release = run_canary(
            reg, spec.name, candidate.version, spec.canary, build_metrics_source(settings)
        )
        freeze_holdout(reg, spec.name, holdout_snap.digest, version=candidate.version)
        summary = summarize_run(
            reg, spec.name, "bench", snapshot, None, candidate, decision, release, started
        )
        record_run(reg, spec.name, key, summary, actor="bench")
        return summary
    finally:
        reg.close()


def _register(home: Path, spec: Any) -> None:
    """Spec registration: setup the flow needs before it runs (not timed)."""
    from retrain.config.settings import Settings
    from retrain.config.spec_store import register_spec
    from retrain.config.wiring import build_registry

    reg = build_registry(Settings(home=home))
    register_spec(reg, spec)
    reg.close()


def _with_flow(home: Path, spec: Any) -> dict[str, Any]:
    from flows.retrain_model import retrain_model

    os.environ["RETRAIN_HOME"] = str(home)  # flows read their Settings from the environment
    return retrain_model(pipeline=spec.name, trigger="bench")


def bench_flow_overhead(*, quick: bool) -> None:
    """Print the flow's and the direct calls' wall times and their ratio (same run)."""
    import logging
    import warnings

    from prefect.testing.utilities import prefect_test_harness

    from tasks.data.simulator import simulate

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    rows, epochs, repeats = (20_000, 2, 1) if quick else (200_000, 3, 2)
    with tempfile.TemporaryDirectory(prefix="flow-bench-") as tmp:
        source = Path(tmp) / "rows.parquet"
        simulate(rows, seed=1).to_parquet(source, index=False)
        spec = _spec(str(source), epochs)
        direct: list[float] = []
        flowed: list[float] = []
        with prefect_test_harness(server_startup_timeout=120):
            _direct(Path(tmp) / "warm", spec)  # imports and first-use costs, on neither side
            for i in range(repeats):
                started = time.perf_counter()
                a = _direct(Path(tmp) / f"direct-{i}", spec)
                direct.append(time.perf_counter() - started)
                home = Path(tmp) / f"flow-{i}"
                _register(home, spec)
                started = time.perf_counter()
                b = _with_flow(home, spec)
                flowed.append(time.perf_counter() - started)
                assert a["gate"] == b["gate"] and a["release"] == b["release"] == "promoted"
    d, f = statistics.median(direct), statistics.median(flowed)
    budget = 1.10 * d + 3.0
    print(
        f"retrain flow vs functions called directly ({rows:,} rows, {epochs} epochs, "
        f"median of {repeats}):"
    )
    print(f"  functions directly  {d:7.2f} s   runs: {', '.join(f'{x:.2f}' for x in direct)}")
    print(f"  retrain-model flow  {f:7.2f} s   runs: {', '.join(f'{x:.2f}' for x in flowed)}")
    print(
        f"  flow / direct = {f / d:.2f}x, overhead {f - d:+.2f} s; "
        f"target <= 1.10x + 3 s = {budget:.2f} s: {'meets' if f <= budget else 'MISSES'}"
    )
