"""``retrain simulate|validate|drift|snapshot`` as a new user types them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from retrain.cli.app import app


def test_simulate_then_validate_pass_and_fail(home: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.csv"
    made = runner.invoke(app, ["simulate", "--rows", "3000", "--seed", "1", "-o", str(good)])
    assert made.exit_code == 0, made.output
    runner.invoke(app, ["simulate", "--scenario", "nulls", "--rows", "3000", "-o", str(bad)])
    passed = runner.invoke(app, ["validate", "loans", str(good)])
    assert passed.exit_code == 0, passed.output
    assert "all 63 checks passed on 3000 rows" in passed.output
    failed = runner.invoke(app, ["validate", "loans", str(bad)])
    assert failed.exit_code == 1
    assert "annual_income" in failed.output and "not_be_null" in failed.output


def test_drift_prints_a_table_and_saves_the_report(home: Path, tmp_path: Path) -> None:
    report = tmp_path / "out.html"
    result = CliRunner().invoke(
        app,
        [
            "drift",
            "simulator://loans?rows=3000&seed=1",
            "simulator://loans?rows=3000&seed=2&scenario=covariate_shift",
            "--report",
            str(report),
            "--fail-on-drift",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "credit_score" in result.output and "Wasserstein" in result.output
    assert "DRIFT:" in result.output
    assert "<html" in report.read_text()[:200].lower()


def test_snapshot_prints_the_same_digest_for_the_same_rows(home: Path) -> None:
    runner = CliRunner()
    source = "simulator://loans?rows=2000&seed=4"
    first = runner.invoke(app, ["snapshot", "loans", source])
    second = runner.invoke(app, ["snapshot", "loans", source])
    assert first.exit_code == 0, first.output
    assert first.output.split()[1].startswith("sha256:")
    assert first.output == second.output
    digest = first.output.split()[1]
    checked = runner.invoke(app, ["validate", "loans", digest, "--record", "loans"])
    assert checked.exit_code == 0, checked.output


def test_bad_input_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "latin1.csv"
    broken.write_bytes("a,b\nZürich,1\n".encode("latin-1"))
    env = {**os.environ, "RETRAIN_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "retrain", "validate", "loans", str(broken)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error:") and "not UTF-8" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
