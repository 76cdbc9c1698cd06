"""Training that streams a snapshot's Parquet row groups instead of holding the data in memory.

``train_model`` comes here when ``TrainingRun.streaming`` is set, or when it is given a
snapshot digest whose estimated in-memory size (``estimated_training_bytes``: rows times the
schema's bytes per row, times ``_IN_MEMORY_COPIES`` for the frame, its encoded arrays and the
tensors) exceeds the run's memory budget. The steps mirror the in-memory path:

1. one pass fits the preprocessor on the training rows (``models.stream_stats``);
2. the seeded net is built as ``prepare.build_network`` builds it;
3. Lightning fits it on batches streamed by ``models.stream_data.StreamingDataModule``, rows
   shuffled within a buffer sized from the memory budget (``batch_rows_for``);
4. the best weights are scored on the validation rows, read again chunk by chunk;
5. the bundle (same format) is stored and registered as a candidate.

The split differs from the in-memory path's (a hash of each row's index, see
``models.stream_data``), so the bundle's lineage records ``"data_path": "streaming"`` and the
run's inputs digest includes it: the two paths never share checkpoints, and their bundles
are not expected to be equal.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.stream_data import StreamingDataModule, StreamSplit
from models.stream_stats import fit_streaming
from tasks.training.lineage import frame_digest, inputs_digest
from tasks.training.plan import TrainingPlan, TrainingRun

if TYPE_CHECKING:
    from registry.store import Registry
    from tasks.training.fit import TrainResult

__all__ = [
    "DEFAULT_MEMORY_BUDGET_MB",
    "estimated_training_bytes",
    "should_stream",
    "train_streaming",
]

DEFAULT_MEMORY_BUDGET_MB = 1024  # Settings.memory_budget_mb's default
_IN_MEMORY_COPIES = 3
_DTYPE_BYTES = {"bool": 1, "int8": 1, "int16": 2, "int32": 4, "float32": 4, "category": 4}
_OTHER_BYTES = 8  # int64, float64, datetimes
_TEXT_BYTES = 64  # object / string columns: a pointer plus a small Python string


def estimated_training_bytes(rows: int, schema: Mapping[str, str]) -> int:
    """Bytes the in-memory path would hold for ``rows`` rows of ``schema`` (a rough figure)."""
    per_row = 0
    for dtype in schema.values():
        name = dtype.lower()
        if name in _DTYPE_BYTES:
            per_row += _DTYPE_BYTES[name]
        elif name in ("object", "string", "str") or name.startswith("string"):
            per_row += _TEXT_BYTES
        else:
            per_row += _OTHER_BYTES
    return rows * max(per_row, 1) * _IN_MEMORY_COPIES


def should_stream(registry: Registry, data: pd.DataFrame | str, run: TrainingRun) -> bool:
    """Forced by the run, or a snapshot too big for the run's memory budget."""
    if run.streaming:
        return True
    if not isinstance(data, str):
        return False
    record = registry.catalog.get_dataset(data)
    budget = (run.memory_budget_mb or DEFAULT_MEMORY_BUDGET_MB) * 2**20
    return estimated_training_bytes(record.rows, record.schema) > budget


def train_streaming(
    registry: Registry,
    data: pd.DataFrame | str,
    plan: TrainingPlan,
    run: TrainingRun,
    *,
    dataset_digest: str | None,
    lineage: Mapping[str, Any] | None,
) -> TrainResult:
    """``train_model`` on streamed row groups (see the module docstring)."""
    from models.budget import budget_stop
    from tasks.training import bundling, loop, prepare
    from tasks.training.background import background_sample
    from tasks.training.fit import train_result

    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="retrain-stream-"))
    try:
        path, digest = _source_file(registry, data, dataset_digest, scratch)
        fitting = plan.fitting
        budget = run.memory_budget_mb or DEFAULT_MEMORY_BUDGET_MB
        pre, split = fit_streaming(
            path,
            plan.numeric,
            plan.categorical,
            target=plan.target,
            task=plan.task,
            max_categories=plan.architecture.max_categories,
            seed=fitting.seed,
            val_fraction=fitting.val_fraction,
        )
        identity = prepare.run_identity(plan, digest)
        identity = dataclasses.replace(
            identity,
            inputs_digest=inputs_digest(
                {"in_memory": identity.inputs_digest, "data_path": "streaming"}
            ),
        )
        # The spec's plan names the run; the fit uses its batch and rate for this data/device.
        plan = prepare.effective_plan(plan, train_rows=sum(split.train_rows))
        batch_size = plan.fitting.batch_size
        assert isinstance(batch_size, int), "effective_plan resolves it"
        net, module = prepare.build_network(plan, pre)
        datamodule = StreamingDataModule(
            split,
            pre,
            target=plan.target,
            regression=plan.task == "regression",
            batch_size=batch_size,
            seed=fitting.seed,
            buffer_rows=_buffer_rows(budget, split),
        )
        fitted = loop.fit_plan(plan, run, identity, module, datamodule, rows=split.rows)
        run = dataclasses.replace(run, run_info={**run.run_info, **budget_stop(fitted.trainer)})
        if not fitted.trainer.is_global_zero:
            return train_result(plan, fitted, None, {}, None, rows=split.rows, started=started)
        # Validation rows read again chunk by chunk: only labels and predictions are gathered.
        val = datamodule.val_stream(max(batch_size, 8192))
        metrics = bundling.validation_metrics(net, fitted.best, plan.task, pre, val.arrays())
        # The explanation background: from the first row group that holds training rows.
        group = next(g for g, rows in enumerate(split.train_rows) if rows)
        frame, val_rows = split.chunk(group)
        features = [*plan.numeric, *plan.categorical]
        stored, run_id = bundling.store_and_track(
            registry,
            plan,
            run,
            identity,
            fitted,
            net,
            pre,
            metrics,
            extra={**dict(lineage or {}), "data_path": "streaming"},
            background=background_sample(
                frame, np.flatnonzero(~val_rows), features, seed=plan.fitting.seed
            ),
            reason=f"trained on {identity.dataset_digest} (streamed)",
        )
        return train_result(plan, fitted, stored, metrics, run_id, rows=split.rows, started=started)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _buffer_rows(budget_mb: int, split: StreamSplit) -> int:
    """Rows shuffled together: what the budget allows, at least one row group."""
    from tasks.data.streaming import batch_rows_for

    return max(batch_rows_for(budget_mb, len(split.columns)), max(split.group_rows, default=1))


def _source_file(
    registry: Registry, data: pd.DataFrame | str, dataset_digest: str | None, scratch: Path
) -> tuple[Path, str]:
    """A local Parquet file of the data and its digest: a snapshot's own bytes, or a frame
    written with the snapshot layout."""
    if isinstance(data, str):
        from tasks.data.streaming import snapshot_path

        return snapshot_path(registry, data), data
    from tasks.data.snapshots import to_parquet_bytes

    path = scratch / "data.parquet"
    path.write_bytes(to_parquet_bytes(data))
    return path, dataset_digest or frame_digest(data)
