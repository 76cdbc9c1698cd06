"""Privacy by default, end to end: personal data planted in a loan batch never reaches a
snapshot, a bundle, a report, a log line, the SQL catalog or the MLflow store, and the values
of a sensitive feature are never shown (drift report, model card, validation result).

Two real retrains run through the loop's plain steps (the second compares with a champion,
so it measures drift and grades slices), then the drift monitor runs on recent data; every
file under the home (registry blobs, SQLite catalogs, MLflow store and artifacts, checkpoints)
is then read back and searched.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from registry.errors import ConfigError
from registry.store import Registry
from retrain.config.settings import Settings
from retrain.config.spec_store import get_registered_spec, register_spec
from retrain.config.specs import DEFAULT_SPECS_DIR, parse_spec
from retrain.config.wiring import build_tracker
from retrain.testing import ScriptedMetricsSource
from tasks.data.drift import DriftPolicy, detect_drift
from tasks.data.privacy import MASK, PrivacyPolicy, apply_pii
from tasks.data.simulator import simulate
from tasks.pipeline.cycle import check_drift, retrain_when_due
from tasks.pipeline.recipe import RetrainEnv, RetrainRequest
from tasks.training.plan import TrainingRun

MODEL = "loan-default"
KEY = "test-only-pii-key-0123456789abcdef"
PLANTED = re.compile(rb"pii-canary-\d+@example\.org|078-\d\d-\d{4}")
REGIONS = ("north", "south", "east", "west", "central")
SENSITIVE = ["region", "annual_income"]
PRIVACY = {
    "pii": {"email": "drop", "ssn": "hash"},
    "sensitive": SENSITIVE,
    "retention_days": 30,
}


def _planted(rows: int, seed: int, first: int) -> pd.DataFrame:
    """A simulated loan batch with an e-mail and an SSN per applicant (unique, greppable)."""
    frame = simulate(rows, seed=seed)
    ids = range(first, first + rows)
    frame["email"] = [f"pii-canary-{i}@example.org" for i in ids]
    frame["ssn"] = [f"078-{i // 10000 % 100:02d}-{i % 10000:04d}" for i in ids]
    return frame


def _source(tmp_path: Path, name: str, frame: pd.DataFrame) -> str:
    path = tmp_path / f"{name}.parquet"
    frame.to_parquet(path)
    return str(path)


def _spec(source: str) -> str:
    raw = yaml.safe_load((DEFAULT_SPECS_DIR / "loan-default.yaml").read_text())
    raw["dataset"]["source"] = source
    raw["model"] = {"hidden_sizes": [16]}
    raw["training"].update(max_epochs=2, batch_size=256)
    raw["gate"].update(floor=0.3, latency_p95_ms=None, slices=["region"], slice_min_rows=20)
    raw["gate"].pop("behaviour", None)  # a two-epoch model is judged on its numbers only
    raw["release"] = "gate"
    raw["privacy"] = PRIVACY
    return yaml.safe_dump(raw)


def _searchable(path: Path) -> bytes:
    """A file's content as bytes to search: Parquet decoded to CSV, SQLite dumped row by row."""
    data = path.read_bytes()
    if data[:4] == b"PAR1":
        return data + str(pd.read_parquet(path).to_csv()).encode()
    if data[:16] == b"SQLite format 3\x00":
        with sqlite3.connect(path) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            rows = [repr(row) for t in tables for row in db.execute(f'SELECT * FROM "{t}"')]
        return data + "\n".join(rows).encode()
    return data


def test_pii_never_stored_and_sensitive_values_never_shown(
    registry: Registry, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first = _source(tmp_path, "batch1", _planted(1500, seed=1, first=0))
    register_spec(registry, parse_spec(_spec(first)))
    spec = get_registered_spec(registry, MODEL)
    env = RetrainEnv(
        metrics=ScriptedMetricsSource([]),
        run=TrainingRun(tracker=build_tracker(settings), checkpoint_root=settings.home / "ckpt"),
        pii_key=KEY,
    )
    now = datetime.now(UTC)
    said: list[str] = []
    for run, source in enumerate(
        [first, _source(tmp_path, "batch2", _planted(1500, seed=2, first=5000))], start=1
    ):
        summary = retrain_when_due(
            registry, spec, RetrainRequest(source), env, now=now, run_id=f"r{run}", say=said.append
        )
        assert summary.outcome.startswith(("promoted", "rejected")), summary
    recent = _planted(1500, seed=3, first=9000)
    monitor = check_drift(
        registry, spec, recent, now=now, publish=False, say=said.append, pii_key=KEY
    )
    assert monitor.champion is not None

    # The hashed SSN is still there, as a keyed hash: a join key, not a number.
    batch = registry.catalog.latest_dataset(MODEL)
    assert batch is not None
    stored = pd.read_parquet(io.BytesIO(registry.get_bytes(batch.digest)))
    assert "email" not in stored.columns
    assert stored["ssn"].str.fullmatch(r"[0-9a-f]{64}").all()

    # Zero hits anywhere under the home: blobs, registry.db, mlflow.db, MLflow artifacts.
    assert PLANTED.search(_searchable(Path(first)))  # the search does find them in Parquet
    files = [p for p in settings.home.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in files)
    hits = [str(p) for p in files if PLANTED.search(_searchable(p))]
    assert hits == []
    blobs = [info.digest for info in registry.blobs.list()]
    assert len(blobs) > 10
    assert not any(PLANTED.search(registry.get_bytes(d)) for d in blobs)
    logged = [r.getMessage() for r in caplog.records] + said
    assert not any(PLANTED.search(line.encode()) for line in logged)

    # Sensitive values: masked where shown, drift numbers kept.
    drift_html = registry.get_bytes(_artifact(registry, "drift_report", MODEL)).decode()
    monitor_html = registry.get_bytes(_artifact(registry, "drift_report", f"{MODEL}-monitor"))
    for html in (drift_html, monitor_html.decode()):
        assert _shown(html, REGIONS) == set()
        assert "[sensitive 1]" in html
    card = registry.get_bytes(_artifact(registry, "model_card", f"{MODEL}-v2")).decode()
    assert "region=[sensitive 1]" in card
    assert not any(f"region={region}" in card for region in REGIONS)
    validation = json.loads(registry.get_bytes(_artifact(registry, "validation", MODEL)))
    shown = [c["observed"] for c in validation["checks"] if c["column"] in SENSITIVE]
    assert shown and all(o in (None, MASK) for o in shown)


def test_masking_keeps_drift_numbers_and_hides_values() -> None:
    reference, current = simulate(3000, seed=1), simulate(3000, scenario="covariate_shift", seed=2)
    plain = DriftPolicy(columns=["region", "annual_income", "age"], categorical=["region"])
    masked = plain.model_copy(update={"sensitive": ["region", "annual_income"]})
    seen, hidden = detect_drift(reference, current, plain), detect_drift(reference, current, masked)
    for a, b in zip(seen.columns, hidden.columns, strict=True):
        assert (a.column, a.drifted) == (b.column, b.drifted)
        assert a.score == pytest.approx(b.score, rel=1e-6, abs=1e-9)
    assert _shown(seen.html, REGIONS) == set(REGIONS) and _shown(hidden.html, REGIONS) == set()
    top_income = str(int(reference["annual_income"].max()))
    assert top_income in seen.html and top_income not in hidden.html


def test_hash_without_key_refuses_in_one_line_and_spec_mistakes_name_the_field() -> None:
    frame = pd.DataFrame({"ssn": ["078-05-1120"], "x": [1]})
    with pytest.raises(
        ConfigError, match=r"^privacy\.pii: hashing needs a key; set RETRAIN_PII_KEY"
    ):
        apply_pii(frame, PrivacyPolicy(pii={"ssn": "hash"}), None)
    keyed = apply_pii(frame, PrivacyPolicy(pii={"ssn": "hash"}), KEY)
    assert keyed["ssn"][0] != "078-05-1120" and len(keyed["ssn"][0]) == 64
    assert apply_pii(frame, PrivacyPolicy(pii={"ssn": "hash"}), KEY).equals(keyed)  # joins match
    assert list(apply_pii(frame, PrivacyPolicy(pii={"ssn": "drop"}), None).columns) == ["x"]
    raw = yaml.safe_load(_spec("data.parquet"))
    raw["privacy"] = {"pii": {"age": "drop"}}
    with pytest.raises(ConfigError, match=r"privacy\.pii: 'age' is dropped on load, so it cannot"):
        parse_spec(yaml.safe_dump(raw))
    raw["privacy"] = {"pii": {"default": "hash"}}
    with pytest.raises(ConfigError, match=r"privacy\.pii: 'default' is the target"):
        parse_spec(yaml.safe_dump(raw))


def _shown(html: str, values: tuple[str, ...]) -> set[str]:
    """Which of ``values`` a report shows as data: quoted more often than in the page's own
    scripts (plotly's code names "north" as a marker angle), measured on a report without them."""
    chrome = _chrome_html()
    return {v for v in values if html.count(f'"{v}"') > chrome.count(f'"{v}"')}


@functools.cache
def _chrome_html() -> str:
    frame = simulate(1200, seed=5)
    return detect_drift(frame, frame, DriftPolicy(columns=["age"])).html


def _artifact(registry: Registry, kind: str, name: str) -> str:
    record = registry.catalog.latest_artifact(kind, name)
    assert record is not None, (kind, name)
    return record.digest
