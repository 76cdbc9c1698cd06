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


def test_drift_reads_the_spec_target_apart_and_integer_categories_as_categories(
    home: Path, tmp_path: Path
) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    for name, shift in (("ref", 0.0), ("cur", 0.0)):
        rows = 1500
        pd.DataFrame(
            {
                "income": rng.normal(50 + shift, 10, rows),
                "grade": rng.integers(1, 40, rows),  # codes, not quantities
                "churned": rng.integers(0, 2, rows),
            }
        ).to_csv(tmp_path / f"{name}.csv", index=False)
    spec = tmp_path / "churn.yaml"
    spec.write_text(
        "name: churn\ndataset:\n  contract: loans\n  source: " + str(tmp_path / "ref.csv") + "\n"
        "target: churned\ntask: binary\n"
        "features:\n  numeric: [income]\n  categorical: [grade]\n"
    )
    args = ["drift", str(tmp_path / "ref.csv"), str(tmp_path / "cur.csv")]
    args += ["--report", str(tmp_path / "r.html")]
    plain = CliRunner().invoke(app, args)
    assert plain.exit_code == 0, plain.output
    assert _row(plain.output, "grade")[1:3] == ["feature", "Wasserstein distance (normed)"]
    assert _row(plain.output, "churned")[1] == "feature"  # what the spec fixes
    with_spec = CliRunner().invoke(app, [*args, "--pipeline", str(spec)])
    assert with_spec.exit_code == 0, with_spec.output
    assert "comparing churn's features (target 'churned' reported separately)" in with_spec.output
    assert _row(with_spec.output, "grade")[1:3] == ["feature", "Jensen-Shannon distance"]
    assert _row(with_spec.output, "churned")[1] == "target"
    assert "of 2 features drifted" in with_spec.output


def _row(output: str, column: str) -> list[str]:
    """The cells of ``column``'s row in a printed table."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if cells and cells[0] == column:
            return cells
    raise AssertionError(f"no row for {column!r} in:\n{output}")
