"""The data steps of a retrain for a source larger than the memory budget, streamed.

``tasks.pipeline.steps`` hands a ``LargeTable`` here instead of loading it: the batch,
training and holdout snapshots are written in one pass, the contract runs batch by batch,
drift reads only its samples. Results and digests equal the in-memory steps' for the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tasks.data.snapshots import Snapshot
from tasks.data.stream_io import MIN_BATCH_ROWS
from tasks.data.streaming import (
    LargeTable,
    drift_streaming,
    split_holdout_streaming,
    validate_streaming,
    validation_workers,
)

if TYPE_CHECKING:
    from registry.store import Registry
    from tasks.data.drift import DriftPolicy
    from tasks.data.drift_result import DriftResult
    from tasks.data.validation_result import ValidationResult
    from tasks.pipeline.plan import PipelinePlan

__all__ = ["check_large", "drift_large", "prepare_large"]


def prepare_large(
    registry: Registry, plan: PipelinePlan, table: LargeTable
) -> tuple[Snapshot, Snapshot, Snapshot]:
    """(batch, training, holdout) snapshots of ``table``, in one streamed pass."""
    model = plan.model
    split = split_holdout_streaming(
        registry,
        table.path,
        plan.holdout_fraction,
        batch_name=model,
        training_name=f"{model}-training",
        holdout_name=f"{model}-holdout",
        seed=plan.training.fitting.seed,
        batch_rows=table.batch_rows,
        transform=table.transform,
    )
    assert split.batch is not None
    return split.batch, split.training, split.holdout


def check_large(
    registry: Registry,
    plan: PipelinePlan,
    suite: Mapping[str, Any],
    table: LargeTable,
    batch_digest: str,
) -> ValidationResult:
    """The contract over the stored batch snapshot, batch by batch; recorded, then raised
    on failure, as ``validate_and_record`` does for a frame."""
    from tasks.data.validation import record_and_raise

    workers = validation_workers()  # each holds its share of the memory budget
    batch_rows = max(MIN_BATCH_ROWS, table.batch_rows // workers)
    result = validate_streaming(
        registry, batch_digest, suite, batch_rows=batch_rows, workers=workers
    )
    return record_and_raise(
        registry,
        result,
        name=plan.model,
        dataset_digest=batch_digest,
        contract_digest=plan.contract_digest,
        sensitive=plan.privacy.sensitive,
    )


def drift_large(
    registry: Registry, reference: str, current: LargeTable, policy: DriftPolicy
) -> DriftResult:
    """Drift of the large ``current`` table against the ``reference`` snapshot."""
    return drift_streaming(registry, reference, current, policy, batch_rows=current.batch_rows)
