"""Streamed training on one GPU: rows/s of an epoch read from Parquet row groups, in one run:
row groups encoded on worker threads ahead of the step (the default) against encoded inline,
and the pinned side-stream prefetcher against Lightning's plain copy.

    python bench/stream_gpu.py --rows 2000000 --batch 8192
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

import models.stream_data as stream_data
import models.stream_encode as stream_encode
from models.lightning_module import TabularModule
from models.modules import TabularMLP
from models.stream_stats import fit_streaming

NUMERIC = [f"x{i}" for i in range(13)]
CATEGORICAL = ["a", "b", "c", "d"]


def write(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({name: rng.normal(size=rows) for name in NUMERIC})
    for name in CATEGORICAL:
        frame[name] = rng.integers(0, 12, rows).astype(str)
    frame["y"] = (frame["x0"] + rng.normal(size=rows) > 0).astype(np.int64)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=131_072)


def epoch_rate(path: Path, batch: int, prefetch: bool, workers: int) -> float:
    pre, split = fit_streaming(path, NUMERIC, CATEGORICAL, target="y", task="binary",
                               max_categories=64, seed=0, val_fraction=0.1)  # fmt: skip
    original = stream_data.CudaPrefetcher.__iter__
    threads = stream_encode.encode_workers
    stream_encode.encode_workers = lambda: workers
    if not prefetch:  # plain host batches: Lightning copies each one when it is needed
        stream_data.CudaPrefetcher.__iter__ = lambda self: iter(self.batches)  # type: ignore[method-assign]
    try:
        net = TabularMLP(len(NUMERIC), pre.cardinalities, [4] * 4, hidden_sizes=(256, 128))
        data = stream_data.StreamingDataModule(
            split, pre, target="y", regression=False, batch_size=batch, seed=0, buffer_rows=1 << 20
        )
        trainer = L.Trainer(accelerator="gpu", devices=1, max_epochs=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False,
                            limit_val_batches=0, precision="bf16-mixed")  # fmt: skip
        started = time.perf_counter()
        trainer.fit(TabularModule(net, "binary", cuda_graphs=True), datamodule=data)
        torch.cuda.synchronize()
        return sum(split.train_rows) / (time.perf_counter() - started)
    finally:
        stream_data.CudaPrefetcher.__iter__ = original  # type: ignore[method-assign]
        stream_encode.encode_workers = threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=8192)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.parquet"
        write(path, args.rows)
        print(f"{torch.cuda.get_device_name()}: {args.rows:,} rows, batch {args.batch}")
        results: dict[str, Any] = {}
        workers = stream_encode.encode_workers()
        epoch_rate(path, args.batch, True, workers)  # warms up CUDA and the caches
        runs = [
            ("prefetch, encode inline", True, 0),
            (f"prefetch, {workers} encode threads", True, workers),
            (f"no prefetch, {workers} encode threads", False, workers),
        ]
        for name, prefetch, threads in runs:
            results[name] = epoch_rate(path, args.batch, prefetch, threads)
        for name, rate in results.items():
            print(f"  {name:<34} {rate:12,.0f} rows/s (one streamed epoch, encode included)")


if __name__ == "__main__":
    main()
