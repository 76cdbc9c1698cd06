"""A retrain's data steps stream a Parquet source larger than the memory budget, with the
snapshots, contract verdict and drift the in-memory steps give for the same rows."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from models.config import ModelConfig, TrainingConfig
from registry.errors import DataSourceError
from registry.store import Registry
from retrain.config.settings import Settings
from tasks.data.drift import DriftPolicy
from tasks.data.simulator import FEATURES_CATEGORICAL, FEATURES_NUMERIC, TARGET, simulate
from tasks.data.sources import S3Options, is_large, load_frame, source_size_bytes
from tasks.data.streaming import LargeTable, batch_rows_for, large_table
from tasks.gate.evaluate import GateRules
from tasks.pipeline.plan import PipelinePlan
from tasks.pipeline.steps import check_contract, measure_drift, prepare_data
from tasks.training.plan import TrainingPlan

PLAN = PipelinePlan(
    TrainingPlan(
        model="loan-default",
        target=TARGET,
        task="binary",
        numeric=FEATURES_NUMERIC,
        categorical=FEATURES_CATEGORICAL,
        architecture=ModelConfig(hidden_sizes=(8,)),
        fitting=TrainingConfig(max_epochs=1),
    ),
    holdout_fraction=0.25,
    gate=GateRules(floor=0.5),
    contract="loans",
)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("batch") / "loans.parquet"
    simulate(40_000, seed=8).to_parquet(path)
    return path


def test_only_local_parquet_larger_than_the_budget_is_large(source: Path, tmp_path: Path) -> None:
    size = source_size_bytes(source)
    assert size is not None and size > 256 << 10
    assert is_large(source, 1) and not is_large(source, 1024) and not is_large(source, None)
    simulate(100, seed=1).to_csv(tmp_path / "small.csv")
    assert source_size_bytes(tmp_path / "small.csv") is None
    assert source_size_bytes("s3://bucket/prefix") is None
    assert large_table(source, 1024) is None
    table = large_table(source, 1)
    assert table is not None and table.batch_rows == batch_rows_for(1, 20) < 1_100


def test_the_budget_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().memory_budget_mb == 1024
    monkeypatch.setenv("RETRAIN_MEMORY_BUDGET_MB", "256")
    assert Settings().memory_budget_mb == 256


def test_streamed_steps_equal_the_in_memory_steps(registry: Registry, source: Path) -> None:
    table = large_table(source, 1)
    assert isinstance(table, LargeTable)
    frame = load_frame(source)
    streamed = prepare_data(registry, PLAN, table)
    assert streamed == prepare_data(registry, PLAN, frame)
    verdict = check_contract(registry, PLAN, table, streamed)
    assert verdict is not None and verdict.success
    assert verdict == check_contract(registry, PLAN, frame, streamed)
    assert [a.meta["success"] for a in registry.catalog.artifacts("validation")] == [True] * 2

    policy = DriftPolicy(target=TARGET, sample_rows=5_000, categorical=["region"])
    reference = prepare_data(
        registry, replace(PLAN, holdout_fraction=0.5), simulate(20_000, seed=9)
    )
    drift = measure_drift(registry, reference.training.digest, table, policy, name="loans")
    same = measure_drift(registry, reference.training.digest, frame, policy, name="loans")
    assert drift.to_dict() == same.to_dict()
    assert drift.current_rows == 40_000


@pytest.mark.s3
def test_a_large_table_on_s3_streams_through_a_local_spool(
    registry: Registry, source: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    import gc

    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    frame = load_frame(source)
    half = len(frame) // 2
    for i, part in enumerate((frame.iloc[:half], frame.iloc[half:])):
        client.put_object(
            Bucket=s3_bucket, Key=f"batches/day-{i}.parquet", Body=part.to_parquet(index=False)
        )
    options = S3Options(s3_endpoint_url=s3_endpoint, s3_region="us-east-1")
    where = f"s3://{s3_bucket}/batches/"
    assert large_table(where, 1024, s3=options) is None  # small for its budget: read whole

    table = large_table(where, 1, s3=options)
    assert isinstance(table, LargeTable) and table.path.is_dir()
    spool = table.path
    assert sorted(p.name for p in spool.iterdir()) == ["part-000000.parquet", "part-000001.parquet"]
    streamed = prepare_data(registry, PLAN, table)
    # The same snapshots as the whole frame read from S3 gives (rows in the keys' order).
    assert streamed == prepare_data(registry, PLAN, load_frame(where, **options))
    del table
    gc.collect()
    assert not spool.exists()  # the spool goes with the table

    with pytest.raises(DataSourceError, match=r"s3://.*/nothing/ holds no \.parquet"):
        large_table(f"s3://{s3_bucket}/nothing/", 1, s3=options)
