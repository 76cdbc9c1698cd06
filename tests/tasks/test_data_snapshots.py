"""Snapshots and sources: same rows give the same digest; bad inputs get one clear line."""

from __future__ import annotations

from pathlib import Path

import boto3
import pandas as pd
import pytest

from registry.errors import DataSourceError
from registry.store import Registry
from tasks.data.simulator import simulate
from tasks.data.snapshots import read_snapshot, take_snapshot, to_parquet_bytes
from tasks.data.sources import load_frame


def test_same_seed_gives_the_same_digest(registry: Registry) -> None:
    first = take_snapshot(registry, "loans", simulate(4_000, seed=5))
    again = take_snapshot(registry, "loans", simulate(4_000, seed=5))
    other = take_snapshot(registry, "loans", simulate(4_000, seed=6))
    assert first.digest == again.digest != other.digest
    assert first.digest.startswith("sha256:") and first.rows == 4_000
    record = registry.catalog.get_dataset(first.digest)
    assert record.rows == 4_000 and record.schema["region"] == "category"


def test_snapshot_round_trips_values_and_types(registry: Registry) -> None:
    frame = simulate(3_000, scenario="nulls", seed=2)
    snap = take_snapshot(registry, "loans", frame)
    pd.testing.assert_frame_equal(read_snapshot(registry, snap.digest), frame)


def test_index_does_not_change_the_bytes() -> None:
    frame = simulate(1_000, seed=1)
    shuffled_index = frame.set_axis(range(5_000, 6_000))
    assert to_parquet_bytes(frame) == to_parquet_bytes(shuffled_index)


def test_loads_parquet_csv_folder_and_simulator(tmp_path: Path) -> None:
    frame = simulate(2_000, seed=3)
    (tmp_path / "a.parquet").write_bytes(to_parquet_bytes(frame.iloc[:1_000]))
    (tmp_path / "b.parquet").write_bytes(to_parquet_bytes(frame.iloc[1_000:]))
    pd.testing.assert_frame_equal(load_frame(tmp_path), frame)
    frame.to_csv(tmp_path / "loans.csv", index=False)
    from_csv = load_frame(tmp_path / "loans.csv")
    assert str(from_csv["event_time"].dtype).endswith("UTC]")
    assert from_csv["annual_income"].tolist() == frame["annual_income"].tolist()
    simulated = load_frame("simulator://loans?scenario=outliers&rows=500&seed=9")
    pd.testing.assert_frame_equal(simulated, simulate(500, scenario="outliers", seed=9))


def _one_line(exc: pytest.ExceptionInfo[DataSourceError]) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_csv_with_a_bad_encoding_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("region,amount\nZürich,1\nGenève,2\n".encode("latin-1"))
    with pytest.raises(DataSourceError) as exc:
        load_frame(path)
    assert "not UTF-8" in _one_line(exc) and "latin1.csv" in str(exc.value)


def test_empty_file_is_one_clear_error(tmp_path: Path) -> None:
    for name in ("empty.csv", "empty.parquet"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(DataSourceError) as exc:
            load_frame(tmp_path / name)
        assert "is empty" in _one_line(exc)


def test_non_tabular_file_is_one_clear_error(tmp_path: Path) -> None:
    png = tmp_path / "chart.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10")
    with pytest.raises(DataSourceError) as exc:
        load_frame(png)
    assert "binary, not a CSV" in _one_line(exc)
    fake = tmp_path / "model.parquet"
    fake.write_text("this is not parquet at all")
    with pytest.raises(DataSourceError) as exc:
        load_frame(fake)
    assert "not a readable Parquet file" in _one_line(exc)
    notes = tmp_path / "notes.json"
    notes.write_text('{"a": 1}')
    with pytest.raises(DataSourceError, match=r"not a \.parquet or \.csv file"):
        load_frame(notes)


def test_missing_path_and_bad_simulator_source(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="does not exist"):
        load_frame(tmp_path / "nope.parquet")
    with pytest.raises(DataSourceError, match="scenario"):
        load_frame("simulator://loans?scenario=meteor")
    with pytest.raises(DataSourceError, match="only 'loans'"):
        load_frame("simulator://cards?rows=5")


@pytest.mark.s3
def test_loads_every_table_under_an_s3_prefix(s3_endpoint: str, s3_bucket: str) -> None:
    """Over real HTTP against the moto S3 server, as with any S3-compatible endpoint."""
    frame = simulate(1_200, seed=4)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for i, part in enumerate((frame.iloc[:600], frame.iloc[600:])):
        client.put_object(
            Bucket=s3_bucket, Key=f"loans/2026/part-{i}.parquet", Body=to_parquet_bytes(part)
        )
    client.put_object(Bucket=s3_bucket, Key="loans/README.txt", Body=b"ignored")
    s3 = {"s3_endpoint_url": s3_endpoint, "s3_region": "us-east-1"}
    loaded = load_frame(f"s3://{s3_bucket}/loans/", **s3)
    pd.testing.assert_frame_equal(loaded, frame)
    with pytest.raises(DataSourceError, match=r"no \.parquet or \.csv objects"):
        load_frame(f"s3://{s3_bucket}/elsewhere", **s3)
    with pytest.raises(DataSourceError, match="cannot read s3://missing"):
        load_frame("s3://missing/x", **s3)
