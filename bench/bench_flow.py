"""The retrain flow against the same recipe run with plain functions, on the same rows.

Both sides run ``tasks.pipeline.recipe.run_retrain`` (the one composition of the steps) on a
fresh registry each time: load the rows, snapshot them, validate them with the Great
Expectations suite, split off the holdout, train the model (fixed epochs), gate it and crown it
(a first model: no canary). The direct side passes ``PLAIN_STEPS``; the flow side runs
``flows.retrain_model.retrain_model`` (``PREFECT_STEPS``) against a temporary Prefect API
(started before timing), so the difference is what orchestration costs: task runs, state
changes, artifacts, the trigger decision, the concurrency slot, the heartbeat thread.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retrain.config.specs import PipelineSpec
    from tasks.pipeline.runs import RetrainSummary

MODEL = "loan-default"
TRIGGER = "bench"  # not an automatic trigger: the flow always runs it


def _spec(source: str, epochs: int) -> PipelineSpec:
    from retrain.config.specs import default_spec_paths, load_spec

    spec = load_spec(next(p for p in default_spec_paths() if p.stem == MODEL))
    return spec.model_copy(
        update={
            "dataset": spec.dataset.model_copy(update={"source": source}),
            # Fixed work on both sides: no early stop.
            "training": spec.training.model_copy(update={"max_epochs": epochs, "patience": 99}),
        }
    )


def _direct(home: Path, spec: PipelineSpec) -> RetrainSummary:
    """The flow's recipe with every step a plain function call, with the flow's clients."""
    from flows.context import PipelineContext
    from retrain.config.settings import Settings
    from retrain.config.wiring import build_registry
    from tasks.pipeline.recipe import PLAIN_STEPS, RetrainRequest, run_retrain

    settings = Settings(home=home)
    reg = build_registry(settings)
    try:
        env = PipelineContext(settings, reg, spec).retrain_env(TRIGGER)
        request = RetrainRequest(spec.dataset.source, trigger=TRIGGER)
        return run_retrain(reg, spec.plan, request, env, steps=PLAIN_STEPS)
    finally:
        reg.close()


def _register(home: Path, spec: PipelineSpec) -> None:
    """Spec registration: setup the flow needs before it runs (not timed)."""
    from retrain.config.settings import Settings
    from retrain.config.spec_store import register_spec
    from retrain.config.wiring import build_registry

    reg = build_registry(Settings(home=home))
    register_spec(reg, spec)
    reg.close()


def _with_flow(home: Path, spec: PipelineSpec) -> RetrainSummary:
    from flows.retrain_model import retrain_model
    from retrain.config.settings import Settings

    return retrain_model(pipeline=spec.name, trigger=TRIGGER, settings=Settings(home=home))


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
                assert a.gate == b.gate and a.release == b.release == "promoted", (a, b)
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
