"""Training and gate benchmarks, each against a baseline measured in the same run.

1. Training throughput (rows/s): Lightning (``Trainer`` with the callbacks ``train_model``
   uses) against a plain PyTorch loop, on the same device tensors, model and epochs.
   Target: Lightning time <= 1.3 x the plain loop's.
2. Gate: paired bootstrap of ROC AUC on 100k holdout rows x 1000 resamples, against a naive
   per-resample loop (extrapolated from 50 resamples), then the whole ``evaluate_candidate``
   (predictions, bootstrap, slices, latency, record). Target: <= 2 s.
3. GPU (only with CUDA): rows/s of the training steps for 1M rows x 32 features in bf16-mixed,
   a plain loop against the Lightning module train_model uses, eager and as CUDA graphs.
4. GPU (only with CUDA): train_model on the loans data, GPU (auto batch) against every CPU core,
   same epochs: wall time and validation AUC.

Run ``python bench/train.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from models.modules import TabularMLP, embedding_dims_for
from models.tensor_data import DeviceBatches, TabularDataModule, split_indices


def _data(rows: int, n_numeric: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    num = rng.normal(size=(rows, n_numeric)).astype(np.float32)
    cat = rng.integers(1, 6, size=(rows, 4)).astype(np.int64)
    logit = num[:, 0] - 0.5 * num[:, 1] ** 2 + 0.3 * (cat[:, 0] == 2)
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return num, cat, y


def _net(n_numeric: int) -> TabularMLP:
    cards = (6, 6, 6, 6)
    return TabularMLP(
        n_numeric, cards, embedding_dims_for(cards, fixed=None, maximum=16), (64, 32), dropout=0.1
    )


def lightning_fit(
    data: Any,
    epochs: int,
    batch: int,
    device: str,
    precision: str,
    *,
    cuda_graphs: bool = False,
) -> tuple[float, float]:
    """Wall seconds of the whole fit and rows/s of its training steps alone."""
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from models.callbacks import BestWeights, StepThroughput
    from models.lightning_module import TabularModule

    num, cat, y = data
    train_idx, val_idx = split_indices(len(y), 0.2, 0)
    L.seed_everything(0, verbose=False)
    module = TabularModule(_net(num.shape[1]), "binary", cuda_graphs=cuda_graphs)
    dm = TabularDataModule(
        num,
        cat,
        y,
        train_index=train_idx,
        val_index=val_idx,
        batch_size=batch,
        seed=0,
        val_batch_size=65_536 if device == "gpu" else 8192,
    )
    steps = StepThroughput()
    with tempfile.TemporaryDirectory() as ckpt:
        start = time.perf_counter()
        trainer = L.Trainer(
            accelerator=device,
            devices=1,
            precision=precision,  # type: ignore[arg-type]
            max_epochs=epochs,
            deterministic="warn",
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[
                EarlyStopping("val_loss", patience=epochs),
                BestWeights(),
                ModelCheckpoint(dirpath=ckpt, filename="last", save_top_k=1),
                steps,
            ],
        )
        trainer.fit(module, datamodule=dm)
        if device == "gpu":
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
    graph = module._graph  # the bench checks that the capture happened
    if cuda_graphs and device == "gpu" and (graph is None or not graph.captured):
        print("    (the Lightning step was NOT captured as a CUDA graph: it ran eagerly)")
    return wall, steps.rows_per_second


def plain_fit(
    data: Any, epochs: int, batch: int, device: str, bf16: bool, *, cuda_graph: bool = False
) -> tuple[float, float]:
    """The same training as a plain PyTorch loop (AdamW, fused on CUDA; validation each epoch,
    best weights kept). Wall seconds of the whole fit and rows/s of its training steps alone;
    ``cuda_graph`` replays full-size steps with ``models.graph_step.GraphedStep``."""
    from models.graph_step import GraphedStep

    num, cat, y = data
    train_idx, val_idx = split_indices(len(y), 0.2, 0)
    torch.manual_seed(0)
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    start = time.perf_counter()
    net = _net(num.shape[1]).to(dev)
    cuda = dev.type == "cuda"
    opt = torch.optim.AdamW(
        net.parameters(), lr=3e-3, weight_decay=1e-4, fused=True if cuda else None, capturable=cuda
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def tensors(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            torch.from_numpy(num[idx]).to(dev),
            torch.from_numpy(cat[idx]).to(dev),
            torch.from_numpy(y[idx]).to(dev),
        )

    def step(b: Any) -> torch.Tensor:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16, cache_enabled=False):
            out = net(b[0], b[1])
        loss: torch.Tensor = loss_fn(out.float(), b[2])
        loss.backward()  # type: ignore[no-untyped-call]  # untyped in torch
        opt.step()
        return loss.detach()

    graphed = GraphedStep(step, opt) if cuda_graph and dev.type == "cuda" else None
    train, val = tensors(train_idx), tensors(val_idx)
    best, best_state = float("inf"), None
    step_seconds, step_rows = 0.0, 0
    for epoch in range(epochs):
        net.train()
        _sync(dev)
        epoch_start = time.perf_counter()
        for b in DeviceBatches(train, batch, shuffle=True, epoch=partial(int, epoch)):
            if graphed is not None and graphed.fits(b):
                graphed(b)
            else:
                opt.zero_grad(set_to_none=True)
                step(b)
            step_rows += len(b[0])
        _sync(dev)
        step_seconds += time.perf_counter() - epoch_start
        net.eval()
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            total = sum(
                float(loss_fn(net(a, b).float(), c)) * len(c)
                for a, b, c in DeviceBatches(val, 65_536, shuffle=False)
            )
        if total / len(val_idx) < best:
            best, best_state = total / len(val_idx), copy.deepcopy(net.state_dict())
    _sync(dev)
    assert best_state is not None
    return time.perf_counter() - start, step_rows / step_seconds


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def bench_training(
    rows: int,
    epochs: int,
    device: str = "cpu",
    n_numeric: int = 13,
    precision: str = "32-true",
    repeats: int = 3,
) -> None:
    data = _data(rows, n_numeric)
    warm = _data(2048, n_numeric)
    lightning_fit(warm, 1, 512, device, precision)  # one-time imports and lazy init
    plain_fit(warm, 1, 512, device, precision.startswith("bf16"))
    trained_rows = int(rows * 0.8) * epochs
    # Best of N, interleaved: on a shared machine the minimum is the least disturbed run.
    # CPU time (this process) is reported too: it is far less sensitive to other load.
    bf16 = precision.startswith("bf16")
    plain, light = (float("inf"), float("inf")), (float("inf"), float("inf"))
    for _ in range(repeats):
        plain = _best(plain, _timed(plain_fit, data, epochs, 1024, device, bf16))
        light = _best(light, _timed(lightning_fit, data, epochs, 1024, device, precision))
    label = (
        f"{device} {precision}, {rows} rows x {n_numeric + 4} features, {epochs} epochs, "
        f"batch 1024, best of {repeats}"
    )
    print(f"training throughput ({label}):")
    for name, (wall, cpu) in (("plain PyTorch loop", plain), ("Lightning", light)):
        print(
            f"  {name:<18}: {wall:6.2f} s wall {trained_rows / wall:10,.0f} rows/s | "
            f"{cpu:6.2f} s CPU {trained_rows / cpu:10,.0f} rows/s"
        )
    print(
        f"  ratio Lightning/plain time: wall {light[0] / plain[0]:.2f}x, "
        f"CPU {light[1] / plain[1]:.2f}x (target <= 1.30x)"
    )


def bench_gpu_steps(rows: int, epochs: int, batches: list[int], device: str = "gpu") -> None:
    """Rows/s of the training steps: a plain loop against train_model's Lightning module, each
    eager and with the step replayed as a CUDA graph, at the same batch and bf16-mixed."""
    n_numeric = 28
    precision = "bf16-mixed" if device == "gpu" else "32-true"
    bf16 = precision.startswith("bf16")
    data = _data(rows, n_numeric)
    warm = _data(20_000, n_numeric)
    for graph in (False, True):  # kernels, cuBLAS handles, Lightning's lazy imports
        lightning_fit(warm, 1, 2048, device, precision, cuda_graphs=graph)
        plain_fit(warm, 1, 2048, device, bf16, cuda_graph=graph)
    print(
        f"training-step throughput ({device} {precision}, {rows:,} rows x {n_numeric + 4} "
        f"features, {epochs} epochs, best of 2; validation and checkpoints excluded):"
    )
    for batch in batches:
        runs: dict[str, Callable[[], tuple[float, float]]] = {
            "plain loop, eager": partial(plain_fit, data, epochs, batch, device, bf16),
            "plain loop, CUDA graph": partial(
                plain_fit, data, epochs, batch, device, bf16, cuda_graph=True
            ),
            "Lightning, eager": partial(lightning_fit, data, epochs, batch, device, precision),
            "Lightning, CUDA graph (default)": partial(
                lightning_fit, data, epochs, batch, device, precision, cuda_graphs=True
            ),
        }
        speed = {name: max(run()[1] for _ in range(2)) for name, run in runs.items()}
        print(f"  batch {batch}:")
        for name, value in speed.items():
            print(f"    {name:<32}: {value:14,.0f} rows/s")
        ours = speed["Lightning, CUDA graph (default)"]
        print(
            f"    ratio Lightning (default) / plain eager: {ours / speed['plain loop, eager']:.2f}x"
            f"; / plain CUDA graph: {ours / speed['plain loop, CUDA graph']:.2f}x; "
            f"Lightning eager / plain eager: "
            f"{speed['Lightning, eager'] / speed['plain loop, eager']:.2f}x (target >= 0.90x)"
        )


def bench_train_model_devices(rows: int, epochs: int, device: str = "gpu") -> None:
    """``train_model`` on the loans data: the GPU with the default (auto) batch policy against
    every CPU core at the CPU default, the same epochs; wall time and validation AUC."""
    import os

    from models.config import TrainingConfig
    from tasks.data.simulator import FEATURES_CATEGORICAL, FEATURES_NUMERIC, TARGET, simulate

    frame = simulate(rows, seed=1)
    cores = os.cpu_count() or 1
    contenders = {
        f"{device} (auto batch, lr)": TrainingConfig(
            max_epochs=epochs, patience=epochs, accelerator=device
        ),
        f"cpu, {cores} threads": TrainingConfig(
            max_epochs=epochs, patience=epochs, accelerator="cpu", cpu_threads=cores
        ),
        "cpu, 1 thread (default)": TrainingConfig(
            max_epochs=epochs, patience=epochs, accelerator="cpu"
        ),
    }
    print(
        f"train_model on the loans spec ({rows:,} rows x "
        f"{len(FEATURES_NUMERIC) + len(FEATURES_CATEGORICAL)} features, {epochs} epochs):"
    )
    walls = {}
    for name, fitting in contenders.items():
        _train_once(simulate(5000, seed=2), fitting)  # one-time initialisation
        result, wall = _train_once(frame, fitting)
        walls[name] = wall
        hyper = result.lineage.get("hyperparameters", {}).get("training", {})
        print(
            f"  {name:<24}: {wall:7.2f} s wall | steps {result.train_rows_per_s:13,.0f} rows/s | "
            f"batch {hyper.get('batch_size')}, lr {hyper.get('learning_rate'):.4g} | "
            f"val_roc_auc {result.metrics.get('val_roc_auc', float('nan')):.4f} "
            f"({TARGET}, {result.epochs} epochs)"
        )
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in result.phases.items())
        steps = result.rows * 0.8 * result.epochs / max(result.train_rows_per_s, 1e-9)
        print(f"    where the time went: {parts} (of fit: training steps {steps:.2f} s)")
    gpu_wall, cpu_wall, one_thread = walls.values()
    print(
        f"  speed-up {device} over cpu, {cores} threads: {cpu_wall / gpu_wall:.1f}x "
        f"(target >= 10x on a GPU); over 1 thread: {one_thread / gpu_wall:.1f}x"
    )


def _train_once(frame: Any, fitting: Any) -> tuple[Any, float]:
    from retrain.config.settings import Settings
    from retrain.config.wiring import build_registry
    from tasks.training.fit import train_model
    from tasks.training.plan import TrainingRun, loans_plan

    with tempfile.TemporaryDirectory() as home:
        registry = build_registry(Settings(home=Path(home)))
        plan = loans_plan("bench", fitting=fitting)
        start = time.perf_counter()
        result = train_model(registry, frame, plan, TrainingRun(checkpoint_root=Path(home) / "c"))
        wall = time.perf_counter() - start
        registry.close()
    return result, wall


def _timed(fn: Any, *args: Any) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def _best(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return min(a[0], b[0]), min(a[1], b[1])


def bench_gate(rows: int, resamples: int) -> None:
    from models.bootstrap import paired_bootstrap
    from models.metrics import roc_auc

    rng = np.random.default_rng(0)
    y = rng.random(rows) < 0.2
    cand = np.clip(y * 0.30 + rng.random(rows) * 0.7, 0, 1).astype(np.float32).astype(float)
    champ = np.clip(y * 0.25 + rng.random(rows) * 0.75, 0, 1).astype(np.float32).astype(float)
    result = paired_bootstrap("roc_auc", y, cand, champ, resamples=resamples, seed=0)
    fast = (float("inf"), float("inf"))
    for _ in range(2):  # best of two, as above
        boot = partial(paired_bootstrap, resamples=resamples, seed=0)
        fast = _best(fast, _timed(boot, "roc_auc", y, cand, champ))
    naive_n = 50
    start = time.perf_counter()
    for _ in range(naive_n):
        idx = rng.integers(0, rows, rows)
        roc_auc(y[idx], cand[idx]) - roc_auc(y[idx], champ[idx])
    t_naive = (time.perf_counter() - start) / naive_n * resamples
    print(f"gate bootstrap (roc_auc, {rows} rows x {resamples} resamples, best of 2):")
    print(
        f"  vectorised paired bootstrap: {fast[0]:6.2f} s wall, {fast[1]:.2f} s CPU; "
        f"CI [{result.low:+.4f}, {result.high:+.4f}]"
    )
    print(f"  naive per-resample loop    : {t_naive:6.2f} s wall (extrapolated from {naive_n})")
    print(
        f"  speed-up: {t_naive / fast[0]:.1f}x; target <= 2 s: wall "
        f"{'met' if fast[0] <= 2.0 else 'missed'}, CPU {'met' if fast[1] <= 2.0 else 'missed'}"
    )
    _bench_full_gate(rows, resamples)


def two_versions(home: Path) -> tuple[Any, int, int]:
    """A registry in ``home`` holding two versions of the loans model "bench", each trained two
    epochs on 5000 simulated rows: (registry, first version, second version)."""
    from models.config import TrainingConfig
    from retrain.config.settings import Settings
    from retrain.config.wiring import build_registry
    from tasks.data.simulator import simulate
    from tasks.training.fit import train_model
    from tasks.training.plan import TrainingRun, loans_plan

    registry = build_registry(Settings(home=home))
    plan = loans_plan("bench", fitting=TrainingConfig(max_epochs=2))
    run = TrainingRun(checkpoint_root=home / "ck")
    v1 = train_model(registry, simulate(5000, seed=1), plan, run).version
    v2 = train_model(registry, simulate(5000, seed=2), plan, run).version
    return registry, v1, v2


def _bench_full_gate(rows: int, resamples: int) -> None:
    from tasks.data.simulator import simulate
    from tasks.gate.evaluate import GateRules, evaluate_candidate

    with tempfile.TemporaryDirectory() as home:
        registry, v1, v2 = two_versions(Path(home))
        holdout = simulate(rows, seed=3)
        rules = GateRules(bootstrap_resamples=resamples, slices=["region"])
        start, cpu = time.perf_counter(), time.process_time()
        decision = evaluate_candidate(registry, "bench", v2, holdout, rules, against=v1)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        registry.close()
    print(
        f"  whole evaluate_candidate ({rows} rows, {resamples} resamples, slices, "
        f"{rules.latency_samples} latency probes, recorded): {elapsed:.2f} s wall, {cpu:.2f} s CPU "
        f"(verdict {decision.verdict}, p95 latency {decision.latency_p95_ms:.2f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--gpu-only", action="store_true", help="only the GPU sections (3 and 4), on a GPU host"
    )
    parser.add_argument(
        "--device",
        choices=("gpu", "cpu"),
        default="gpu",
        help="where sections 3 and 4 run (cpu: a smoke run of them where there is no GPU)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import lightning  # noqa: F401  (sets its log levels on import; quieted below)

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # As train_model does by default (TrainingConfig.cpu_threads=1), for both contenders.
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 CPU thread (TrainingConfig.cpu_threads default)")
    if not args.gpu_only:
        if args.quick:
            bench_training(20_000, 2)
            bench_gate(20_000, 1000)
        else:
            bench_training(200_000, 3)
            bench_gate(100_000, 1000)
    if args.device == "cpu":
        bench_gpu_steps(50_000, 1, [8192], device="cpu")
        bench_train_model_devices(20_000, 1, device="cpu")
    elif torch.cuda.is_available():
        print(f"device: {torch.cuda.get_device_name()}")
        rows = 100_000 if args.quick else 1_000_000
        bench_gpu_steps(rows, 3, [8192, 65_536])
        bench_train_model_devices(rows, 3)
    else:
        print("GPU sections (training steps, train_model GPU vs CPU): not measured (no CUDA)")


if __name__ == "__main__":
    main()
