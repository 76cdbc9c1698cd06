"""The shipped Prometheus and Alertmanager files: valid for the real tools, each alert firing on
a faulty series and silent on a healthy one (``promtool test rules``), routed where its action
says, and the rules in step with the pipeline specs they come from."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import retrain.cli  # noqa: F401  (attaches every command to the app)
from retrain.alerts.payloads import SOURCES
from retrain.alerts.prom_rules import JOBS, render_rules
from retrain.cli.app import app as cli
from retrain.config.specs import DEFAULT_SPECS_DIR, PipelineSpec, load_spec
from tasks.release.analysis import CanaryLimits

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "infra" / "prometheus"
RULES = PROM / "retrain-rules.yml"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (Debian: apt-get install prometheus / alertmanager)")
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=PROM, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_promtool_accepts_the_rules_and_the_prometheus_config() -> None:
    promtool = _tool("promtool")
    assert "SUCCESS" in _run(promtool, "check", "rules", RULES.name).stdout
    assert "SUCCESS" in _run(promtool, "check", "config", "prometheus.yml").stdout


def test_each_alert_fires_on_a_fault_and_not_on_healthy_series() -> None:
    promtool = _tool("promtool")
    tests = yaml.safe_load((PROM / "retrain-rules.test.yml").read_text())
    tested = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"]}
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    assert tested == {r["alert"] for r in rules if "alert" in r}  # every alert has its test
    assert "SUCCESS" in _run(promtool, "test", "rules", "retrain-rules.test.yml").stdout


def test_alertmanager_routes_rollbacks_and_retrains_to_the_receiver() -> None:
    amtool = _tool("amtool")
    _run(amtool, "check-config", "alertmanager.yml")

    def receivers(*labels: str) -> str:
        done = _run(amtool, "config", "routes", "test", "--config.file=alertmanager.yml", *labels)
        return done.stdout.strip()

    assert receivers("alertname=RetrainClientErrorRatioHigh", "model=m", "action=rollback",
                     "severity=page") == "retrain-rollback,oncall"  # fmt: skip
    assert receivers("alertname=RetrainPredictionShift", "model=m", "action=retrain") == "retrain"
    assert receivers("alertname=RetrainScrapeTargetDown", "severity=page") == "oncall"
    config = yaml.safe_load((PROM / "alertmanager.yml").read_text())
    hooks = [h for r in config["receivers"] for h in r.get("webhook_configs", [])]
    assert hooks and all(h["url"].endswith("/alerts/alertmanager") for h in hooks)
    assert "alertmanager" in SOURCES
    assert all(h["http_config"]["authorization"]["type"] == "Bearer" for h in hooks)


def test_prometheus_scrapes_the_jobs_the_rules_watch() -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert sorted(job["job_name"] for job in config["scrape_configs"]) == sorted(JOBS)
    assert config["rule_files"] == [RULES.name]


def test_the_shipped_rules_are_those_of_the_shipped_specs() -> None:
    result = CliRunner().invoke(cli, ["alerts", "rules", "--check", str(RULES)])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output


def test_check_says_one_line_and_fails_when_the_file_is_stale(tmp_path: Path) -> None:
    stale = tmp_path / "rules.yml"
    stale.write_text(RULES.read_text().replace("vector(0.01)", "vector(0.5)"))
    done = subprocess.run(
        [sys.executable, "-m", "retrain", "alerts", "rules", "--check", str(stale)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout.strip().splitlines() == [
        f"{stale} is stale: run `retrain alerts rules --out {stale}`"
    ]
    missing = CliRunner().invoke(cli, ["alerts", "rules", "--check", str(tmp_path / "no.yml")])
    assert missing.exit_code == 1 and "is missing" in missing.output
    both = CliRunner().invoke(cli, ["alerts", "rules", "--out", str(stale), "--check", str(stale)])
    assert both.exit_code != 0 and "not both" in str(both.exception)


def test_a_specs_limits_become_its_alert_thresholds(tmp_path: Path) -> None:
    base = load_spec(DEFAULT_SPECS_DIR / "loan-default.yaml")
    limits = CanaryLimits(max_error_rate=0.002, max_p95_latency_s=0.02)
    canary = base.canary.model_copy(update={"limits": limits})
    spec = base.model_copy(update={"name": "fraud-score", "canary": canary})
    rules = yaml.safe_load(render_rules([spec]))["groups"][0]["rules"]
    limit = {r["record"]: r["expr"] for r in rules if r.get("labels") == {"model": "fraud-score"}}
    assert limit["retrain:spec_max_error_ratio"] == "vector(0.002)"
    assert limit["retrain:spec_latency_budget_seconds"] == "vector(0.02)"  # canary's, not gate's
    written = tmp_path / "rules.yml"
    result = CliRunner().invoke(
        cli, ["alerts", "rules", "--spec", str(_save(tmp_path, spec)), "--out", str(written)]
    )
    assert result.exit_code == 0, result.output
    assert "model: fraud-score" in written.read_text()
    if shutil.which("promtool"):
        _run("promtool", "check", "rules", str(written))


def _save(folder: Path, spec: PipelineSpec) -> Path:
    path = folder / f"{spec.name}.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    return path
