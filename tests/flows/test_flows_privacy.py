"""Privacy through the flows as Prefect runs them: a retrain and a drift monitor over batches
with personal columns leave none of their values in the registry or the run logs."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import yaml
from pydantic import SecretStr

from retrain.config.settings import Settings
from retrain.config.spec_store import register_spec
from retrain.config.specs import DEFAULT_SPECS_DIR, parse_spec
from retrain.config.wiring import build_registry
from tasks.data.simulator import simulate

MODEL = "loan-default"
MONDAY = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)
KEY = "flow-test-pii-key-0123456789abcdef"
PLANTED = re.compile(rb"flow-pii-\d+@example\.org|079-\d\d-\d{4}")


def _batch(path: Path, scenario: str, rows: int, seed: int) -> str:
    frame = simulate(rows, scenario=scenario, seed=seed)
    frame["email"] = [f"flow-pii-{seed * 100_000 + i}@example.org" for i in range(rows)]
    frame["ssn"] = [f"079-{i % 100:02d}-{i % 10_000:04d}" for i in range(rows)]
    frame.to_parquet(path, index=False)
    return str(path)


def _every_stored_byte(home: Path) -> bytes:
    """Every file under the platform's home, Parquet also decoded (values are compressed)."""
    found = []
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if data[:4] == b"PAR1":
                data += pd.read_parquet(path).to_csv().encode()
            found.append(data)
    return b"\n".join(found)


def test_a_retrain_and_the_drift_monitor_keep_no_personal_values(
    tmp_path: Path, prefect_harness: None
) -> None:
    from flows.monitor_drift import monitor_drift
    from flows.retrain_model import retrain_model
    from tests.flows.test_flows_pipeline import run_log

    settings = Settings(home=tmp_path / "home", serve_port=9, pii_key=SecretStr(KEY))
    registry = build_registry(settings)
    raw = yaml.safe_load((DEFAULT_SPECS_DIR / "loan-default.yaml").read_text())
    raw["dataset"]["source"] = _batch(tmp_path / "week-1.parquet", "stable", 5000, seed=1)
    raw["training"].update(max_epochs=5)
    raw["release"] = "gate"  # nothing serves here: the gate alone promotes
    raw["privacy"] = {"pii": {"email": "drop", "ssn": "hash"}}
    register_spec(registry, parse_spec(yaml.safe_dump(raw)))

    first = retrain_model(pipeline=MODEL, trigger="bootstrap", as_of=MONDAY, settings=settings)
    assert first.outcome == "promoted", first
    shifted = _batch(tmp_path / "shifted.parquet", "covariate_shift", 3000, seed=6)
    week = MONDAY + timedelta(days=7)
    drifted = monitor_drift(pipeline=MODEL, source=shifted, as_of=week, settings=settings)
    assert drifted.drifted is True and drifted.retrain == "requested"
    registry.close()

    stored = _every_stored_byte(settings.home)
    assert PLANTED.search(stored) is None
    # The keyed hash stays (a join key), once: hashing the monitor's batch twice would fail
    # without the key or give other digests; the values it replaced are nowhere.
    assert re.search(rb"ssn[^\n]*\n[^\n]*[0-9a-f]{64}", stored) is not None
    assert not [line for line in run_log() if PLANTED.search(line.encode())]
