"""``retrain-model``: snapshot → validate → drift → train → gate → canary → promote or abort."""

from __future__ import annotations

from time import monotonic
from typing import Any

from prefect import flow
from prefect.concurrency.sync import concurrency

from flows.context import flow_run_info, open_pipeline
from tasks.artifacts import artifact_key, publish_table
from tasks.data_tasks import detect_drift_task, load_dataset, snapshot_dataset, validate_snapshot
from tasks.lineage import code_lineage
from tasks.pipeline_runs import champion_reference, frozen_holdout, run_key, summarize_run
from tasks.pipeline_tasks import (
    find_reusable_run,
    freeze_promoted_holdout,
    record_retrain,
    split_snapshot,
)
from tasks.release_tasks import release_candidate, repair_model_releases
from tasks.training_tasks import evaluate_candidate_task, train_candidate

__all__ = ["retrain_model"]


@flow(name="retrain-model", log_prints=True)
def retrain_model(
    pipeline: str, force: bool = False, trigger: str = "manual", source: str | None = None
) -> dict[str, Any]:
    """Retrain ``pipeline``'s model on fresh data; the champion changes only through the gates.

    ``source`` overrides the spec's dataset source for this run; ``force`` retrains even when
    an earlier run had the same dataset, spec and code digests.
    """
    started = monotonic()
    # One retrain per model at a time, whatever started it (cron, drift trigger, alert, hand):
    # the global limit `retrain-<model>` has one slot where `retrain up` or deploy created it.
    with concurrency(f"retrain-{pipeline}", occupy=1), open_pipeline(pipeline) as ctx:
        spec, reg = ctx.spec, ctx.registry
        repair_model_releases(reg, [spec.name])
        frame = load_dataset(source or spec.dataset.source, **ctx.s3)
        snapshot = snapshot_dataset(reg, spec.name, frame)
        validate_snapshot(
            reg, frame, spec.dataset.contract, name=spec.name, dataset_digest=snapshot.digest
        )
        key = run_key(snapshot.digest, ctx.spec_digest, code_lineage()["code_digest"])
        earlier = None if force else find_reusable_run(reg, spec.name, key)
        if earlier is not None:
            reused = earlier.get("candidate_version")
            print(f"same dataset, spec and code as an earlier run: reusing v{reused}")
            return {**earlier, "reused": True}
        reference = champion_reference(reg, spec.name)
        drift = (
            detect_drift_task(reg, reference[1], frame, spec.drift, name=spec.name)
            if reference is not None
            else None
        )
        training, fresh_holdout = split_snapshot(
            reg, spec.name, frame, spec.dataset.holdout_fraction
        )
        holdout = frozen_holdout(reg, spec.name) or fresh_holdout.digest
        candidate = train_candidate(
            reg,
            training.digest,
            model=spec.name,
            target=spec.target,
            task=spec.task,
            numeric=spec.features.numeric,
            categorical=spec.features.categorical,
            model_config=spec.model,
            training=spec.training,
            dataset_digest=training.digest,
            lineage={"spec_digest": ctx.spec_digest},
            run_info=flow_run_info(trigger),
            tracker=ctx.tracker(),
            checkpoint_root=ctx.checkpoints,
        )
        decision = evaluate_candidate_task(reg, spec.name, candidate.version, holdout, spec.gate)
        release = None
        if decision.passed:
            release = release_candidate(
                reg, spec.name, candidate.version, spec.canary, ctx.metrics_source()
            )
            if release.promoted:
                freeze_promoted_holdout(
                    reg, spec.name, fresh_holdout.digest, version=candidate.version
                )
        summary = summarize_run(
            reg, spec.name, trigger, snapshot, drift, candidate, decision, release, started
        )
        record_retrain(reg, spec.name, key, summary, actor="retrain-model")
        publish_table(artifact_key("retrain", spec.name), [summary], description="Retrain outcome")
        return summary
