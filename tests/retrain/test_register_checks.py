"""`retrain pipelines register` refuses a spec that can never run: each problem is one line
naming the field and what to do, the exit code is non-zero and nothing is stored."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from retrain.config.settings import Settings
from retrain.config.wiring import build_registry
from retrain.testing_cli import run_cli as retrain

SUITE: dict[str, Any] = {
    "name": "orders",
    "expectations": [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 100}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "late"}},
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "late", "value_set": [0, 1]},
        },
    ],
}


@pytest.fixture
def folder(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's folder with orders.csv, its suite and a spec that registers cleanly."""
    rng = np.random.default_rng(0)
    rows = 400
    pd.DataFrame(
        {
            "weight": rng.uniform(1, 30, rows).round(2),
            "carrier": rng.choice(["dhl", "ups"], rows),
            "late": rng.integers(0, 2, rows),
        }
    ).to_csv(tmp_path / "orders.csv", index=False)
    (tmp_path / "orders.expectations.json").write_text(json.dumps(SUITE))
    _write_spec(tmp_path, lambda spec: None)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _write_spec(folder: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    spec: dict[str, Any] = {
        "name": "late-orders",
        "dataset": {"source": str(folder / "orders.csv"), "contract": "orders.expectations.json"},
        "target": "late",
        "task": "binary",
        "features": {"numeric": ["weight"], "categorical": ["carrier"]},
        "schedule": {"retrain_cron": "0 3 * * 1"},
    }
    change(spec)
    path = folder / "late-orders.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _stored(home: Path) -> tuple[int, int, int]:
    """Artifacts, blobs and events in the registry."""
    with build_registry(Settings(home=home)) as registry:
        catalog = registry.catalog
        return len(catalog.artifacts()), len(catalog.list_blobs()), len(catalog.events())


def _bad_suite(folder: Path) -> None:
    broken = {**SUITE, "expectations": [*SUITE["expectations"], {"type": "expect_the_moon"}]}
    (folder / "orders.expectations.json").write_text(json.dumps(broken))


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = spec
        for part in parents:
            node = node[part]
        node[last] = value

    return change


CASES = {
    "missing suite": (
        _set("dataset.contract", "suites/missing.json"),
        "dataset.contract: no expectation suite file at ",
    ),
    "missing source": (
        _set("dataset.source", "/nowhere/orders.csv"),
        "dataset.source: /nowhere/orders.csv does not exist",
    ),
    "target not in the data": (
        _set("target", "delayed"),
        "target: 'delayed' is not a column of the data (columns: weight, carrier, late)",
    ),
    "text listed as numeric": (
        _set("features", {"numeric": ["weight", "carrier"]}),
        "features.numeric: 'carrier' holds text (e.g. ",
    ),
    "bad cron": (
        _set("schedule.retrain_cron", "0 3 * *"),
        "schedule.retrain_cron: not a 5-field cron expression: '0 3 * *'",
    ),
    "unknown expectation type": (
        None,
        "dataset.contract: ",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_spec_that_cannot_run_is_one_line_and_stores_nothing(
    folder: Path, home: Path, case: str
) -> None:
    code, output = retrain("pipelines", "register", "late-orders.yaml", "--no-deploy")
    assert code == 0, output  # a good spec registers; the registry is not empty
    before = _stored(home)
    change, expected = CASES[case]
    if change is None:
        _bad_suite(folder)
    else:
        _write_spec(folder, change)

    code, output = retrain("pipelines", "register", "late-orders.yaml", "--no-deploy")

    assert code == 2
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: spec late-orders.yaml: " + expected), lines[0]
    if change is None:
        assert "(expect_the_moon) is an unknown type; fix the suite" in lines[0]
    assert _stored(home) == before


def test_a_contract_failing_on_the_sample_is_a_warning(folder: Path, home: Path) -> None:
    strict = {**SUITE, "expectations": [{"type": "expect_table_row_count_to_be_between",
                                         "kwargs": {"min_value": 10_000}}]}  # fmt: skip
    (folder / "orders.expectations.json").write_text(json.dumps(strict))
    code, output = retrain("pipelines", "register", "late-orders.yaml", "--no-deploy")
    assert code == 0, output
    warning = next(line for line in output.splitlines() if line.startswith("warning:"))
    assert warning.startswith(
        "warning: spec late-orders.yaml: dataset.contract fails on a sample of 400 rows"
    )
    assert "registered pipeline late-orders" in output


def test_no_check_registers_a_source_only_workers_reach(folder: Path, home: Path) -> None:
    _write_spec(folder, _set("dataset.source", "s3://worker-only/orders/"))
    code, output = retrain("pipelines", "register", "late-orders.yaml", "--no-deploy", "--no-check")
    assert code == 0, output
    assert "registered pipeline late-orders" in output
    # The suite is still checked with GX: it needs no data.
    _bad_suite(folder)
    code, output = retrain("pipelines", "register", "late-orders.yaml", "--no-deploy", "--no-check")
    assert code == 2 and "(expect_the_moon) is an unknown type" in output


def test_a_contract_name_is_looked_up_on_the_expectations_path(
    folder: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suites = folder / "team-suites"
    suites.mkdir()
    (suites / "orders-v2.json").write_text(json.dumps(SUITE))
    _write_spec(folder, _set("dataset.contract", "orders-v2"))
    code, output = retrain("pipelines", "register", "late-orders.yaml", "--no-deploy")
    assert code == 2
    assert "no expectation suite named 'orders-v2' (orders-v2.json) in " in output
    monkeypatch.setenv("RETRAIN_EXPECTATIONS_PATH", f"/nowhere:{suites}")
    code, output = retrain("pipelines", "register", "late-orders.yaml", "--no-deploy")
    assert code == 0, output
    # The shipped suites stay last on the path: `retrain validate loans DATA` still works.
    code, output = retrain("validate", "loans", "simulator://loans?rows=1500&seed=1")
    assert code == 0, output
    assert "contract loans: all " in output


def test_retrain_toml_names_suite_folders(folder: Path, home: Path) -> None:
    suites = folder / "team-suites"
    suites.mkdir()
    (suites / "orders-v3.json").write_text(json.dumps(SUITE))
    _write_spec(folder, _set("dataset.contract", "orders-v3"))
    (folder / "retrain.toml").write_text('expectations_dir = "team-suites"\n')
    code, output = retrain("pipelines", "register", "late-orders.yaml", "--no-deploy")
    assert code == 0, output
    (folder / "retrain.toml").write_text('expectations_path = ["/nowhere", "team-suites"]\n')
    code, output = retrain("pipelines", "validate", "late-orders.yaml")
    assert code == 0, output
    (folder / "retrain.toml").write_text("expectations_path = 3\n")
    code, output = retrain("pipelines", "validate", "late-orders.yaml")
    assert (code, output.strip()) == (
        2,
        "error: setting expectations_path in retrain.toml: input should be a valid list "
        "(got 3); fix it there",
    )


def test_a_spec_without_a_contract_registers_and_says_so(folder: Path, home: Path) -> None:
    _write_spec(folder, lambda spec: spec["dataset"].pop("contract"))
    code, output = retrain("pipelines", "register", "late-orders.yaml", "--no-deploy")
    assert code == 0, output
    assert "no contract: batches are not validated" in output
    with build_registry(Settings(home=home)) as registry:
        assert registry.catalog.latest_artifact("contract", "late-orders") is None
