"""The Grafana dashboard of the golden signals: it loads, every panel's PromQL is valid for
Prometheus (``promtool check rules`` on the panel expressions), and it reads only series that
exist: those a real model server and alert receiver expose on ``/metrics``, the recording
rules of ``retrain-rules.yml``, and Prometheus' own ``up`` and ``ALERTS``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.store import Registry
from retrain.alerts.launchers import RecordingLauncher
from retrain.alerts.receiver import create_app
from retrain.local.traffic import traffic_rows
from retrain.testing_serving import register_test_bundle, serve_in_process

with warnings.catch_warnings():  # Starlette prefers httpx2 for its test client; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

INFRA = Path(__file__).resolve().parents[2] / "infra"
DASHBOARD = json.loads((INFRA / "grafana" / "retrain-dashboard.json").read_text())
RULES = yaml.safe_load((INFRA / "prometheus" / "retrain-rules.yml").read_text())
# Grafana's variables, replaced as Grafana would before sending a query.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "6h",
    "$__interval": "15s",
    "$model": ".*",
}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "and",
    "or",
    "unless",
    "bool",
    "inf",
    "nan",
}
SUFFIXES = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_count", "_sum"]}


def _queries() -> dict[str, str]:
    """Every PromQL the dashboard sends: panel targets, annotations, the model variable."""
    out = {}
    for panel in DASHBOARD["panels"]:
        for target in panel.get("targets", []):
            out[f"{panel['title']} {target['refId']}"] = target["expr"]
    for note in DASHBOARD["annotations"]["list"]:
        out[f"annotation {note['name']}"] = note["expr"]
    return out


def _grafana_free(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"an unknown Grafana variable in {expr}"
    return expr


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads: identifiers that are not functions,
    keywords, label names (in ``{}`` or ``by (...)``), strings or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[match.end() :].lstrip()
        word = match.group(0)
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word) or text[max(0, match.start() - 1)].isdigit():
            continue
        names.add(word)
    return names


def _exposed(text: str) -> set[str]:
    """Sample names of a ``/metrics`` page, from its ``# TYPE`` lines."""
    names = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        base = family.removesuffix("_total") if kind == "counter" else family
        names |= {base + suffix for suffix in SUFFIXES.get(kind, [""])}
    return names


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every series name a Prometheus scraping the platform can be asked for."""
    registry = Registry.open(
        f"sqlite:///{tmp_path_factory.mktemp('reg') / 'registry.db'}",
        tmp_path_factory.mktemp("blobs").as_uri(),
    )
    try:
        register_test_bundle(registry, "loans", champion=True)
        with serve_in_process(registry) as served:
            rows, _ = traffic_rows(3, seed=1)
            answer = served.client.post("/v1/models/loans:predict", json={"instances": rows})
            assert answer.status_code == 200, answer.text
            server = served.client.get("/metrics").text
        app = create_app(registry, RecordingLauncher(), token="t")
        with TestClient(app) as client:
            receiver = client.get("/metrics").text
    finally:
        registry.close()
    rules = {r["record"] for group in RULES["groups"] for r in group["rules"] if "record" in r}
    return _exposed(server) | _exposed(receiver) | rules | {"up", "ALERTS"}


def test_the_dashboard_loads_with_its_variables() -> None:
    assert DASHBOARD["uid"] and DASHBOARD["title"]
    names = [v["name"] for v in DASHBOARD["templating"]["list"]]
    assert names == ["datasource", "model"]
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        assert panel["type"] == "row" or panel["targets"], panel["title"]


def test_every_query_reads_only_series_the_platform_exposes(series: set[str]) -> None:
    queries = _queries()
    unknown = {where: sorted(metric_names(q) - series) for where, q in queries.items()}
    assert {where: names for where, names in unknown.items() if names} == {}
    read = set().union(*(metric_names(q) for q in queries.values()))
    golden = {
        "retrain_client_requests_total",
        "retrain_client_latency_seconds_bucket",
        "retrain_predict_latency_seconds_bucket",
        "retrain_route_weight",
        "model:retrain_prediction_value:ks_vs_baseline",
        "retrain_alert_decisions_total",
    }
    assert golden <= read
    variable = DASHBOARD["templating"]["list"][1]["definition"]
    assert "retrain_client_requests_total" in variable  # every routed model has this series


def test_the_name_reader_sees_through_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (model, le) (rate(x_bucket{model=~"a|b"}[5m] '
        "offset 1h))) / on (model) group_left y:z and 2e3 > bool w"
    )
    assert metric_names(expr) == {"x_bucket", "y:z", "w"}


def test_promtool_accepts_every_query(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    rules = [
        {"record": f"dashboard:query_{i}", "expr": _grafana_free(expr)}
        for i, expr in enumerate(_queries().values())
    ]
    document: dict[str, Any] = {"groups": [{"name": "dashboard", "rules": rules}]}
    file = tmp_path / "dashboard-rules.yml"
    file.write_text(yaml.safe_dump(document))
    done = subprocess.run(
        [promtool, "check", "rules", str(file)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout
