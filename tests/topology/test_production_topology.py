"""The whole loop through two process workers on the production topology (conftest.py starts
every part as its own process, as infra/README.md does):

1. a model registered by spec (``retrain pipelines register SPEC --work-pool retrain-local``)
   retrains through a worker started in a folder of its own, and becomes champion;
2. new data lands in S3; the drift monitor finds drift and emits ``ml.drift.detected``; the
   event starts ``retrain-on-drift-<model>``, whose candidate goes through a canary on live
   traffic to the model server and is promoted (one full loop, timed);
3. meanwhile an alert for that model, inside its cooldown, starts nothing, and an alert for a
   second model, registered by spec, starts that model's first retrain on the other worker;
4. the rollback deployment moves the champion back;
5. a worker's flow-run process killed mid-training leaves the run ``Crashed``; the crash hook
   records it and gives its retrain slot back at once (a release it held would be cleared too,
   see tests/flows/test_crashed_runs.py), and the same run again completes with no duplicate
   version.

Then each store is read: every blob in S3, the rows in PostgreSQL, every run and artifact in
MLflow, and no two retrains of one model overlapping.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import yaml
from topology_checks import (
    check_blobs_in_s3,
    check_mlflow,
    check_no_overlap,
    cli_ok,
    events,
    newest_run,
    prefect,
    registry,
    runs_of,
    sql,
    start_run,
    summary_of,
    wait_run,
)
from topology_stack import ALERTS_TOKEN, POOL, Topology

from retrain.config.specs import DEFAULT_SPECS_DIR
from tasks.data.simulator import simulate

pytestmark = pytest.mark.topology

A, B = "loan-topo", "lgd-topo"
LOOSE_CANARY = {"max_error_rate": 0.05, "max_latency_ratio": 10.0, "max_prediction_shift": 1.0}


def _spec(top: Topology, base: str, name: str, source: str, **changes: Any) -> Path:
    """A copy of a shipped spec, small and quick: two epochs, a tiny net, no cron schedules."""
    spec = yaml.safe_load((DEFAULT_SPECS_DIR / base).read_text())
    spec.update(name=name, model={"hidden_sizes": [16]})
    spec["dataset"]["source"] = source
    spec["training"].update(max_epochs=2, batch_size=256)
    spec["gate"].update(latency_p95_ms=None, **changes.pop("gate"))
    spec["gate"].pop("behaviour", None)  # two epochs do not learn every direction
    spec["schedule"].update(retrain_cron=None, monitor_cron=None)
    spec.update(changes)
    path = top.tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _land(top: Topology, week: str, frame: Any) -> None:
    """This week's production data replaces last week's under model A's ``dataset.source``."""
    s3 = top.s3()
    for item in s3.list_objects_v2(Bucket="retrain-data", Prefix=f"{A}/").get("Contents", []):
        s3.delete_object(Bucket="retrain-data", Key=item["Key"])
    body = io.BytesIO()
    frame.to_parquet(body, index=False)
    s3.put_object(Bucket="retrain-data", Key=f"{A}/{week}.parquet", Body=body.getvalue())


class Traffic:
    """Users of the model server: about 25 predict requests a second for one model."""

    def __init__(self, top: Topology, model: str) -> None:
        rows = json.loads(simulate(40, seed=9).drop(columns=["default"]).to_json(orient="records"))
        self.url = f"{top.urls['serve']}/v1/models/{model}:predict"
        self.batches = [rows[i : i + 2] for i in range(0, len(rows), 2)]
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _send(self) -> None:
        with httpx.Client(timeout=5.0) as http:
            n = 0
            while not self._stop.wait(0.04):
                n += 1
                try:
                    answer = http.post(self.url, json={"instances": self.batches[n % 20]})
                except httpx.HTTPError:
                    continue
                self.answered += answer.is_success


def _alert(top: Topology, model: str, key: str) -> None:
    body = {"model": model, "status": "firing", "reason": "error budget burn", "dedup_key": key}
    headers = {"Authorization": f"Bearer {ALERTS_TOKEN}"}
    answer = httpx.post(f"{top.urls['alerts']}/alerts/generic", json=body, headers=headers)
    assert answer.status_code == 202, answer.text


def _flow_run_pids(run_id: UUID) -> list[int]:
    """The processes of a flow run: the worker's flow-run subprocess and what it started
    (each carries the run's id in its environment)."""
    marker = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _kill_while_training(top: Topology, run_id: UUID, timeout_s: float = 120.0) -> None:
    """SIGKILL the run's processes the moment its ``train-candidate`` task runs."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs = FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
    deadline = time.monotonic() + timeout_s
    with prefect(top) as client:
        while time.monotonic() < deadline:
            tasks = client.read_task_runs(flow_run_filter=runs)
            if any(t.name.startswith("train-candidate") for t in tasks):
                for pid in _flow_run_pids(run_id):
                    os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.2)
    pytest.fail(f"run {run_id} never reached training:\n{top.tail('worker-1')}")


def _until(what: str, ready: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := ready():
            return found
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout_s:.0f} s")


def test_the_loop_runs_through_two_process_workers(
    topology: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    top, timings = topology, {}
    started = time.monotonic()
    for key, value in top.env.items():  # this process reads the stores as the others do
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    canary = {"steps": [50, 100], "interval_s": 3, "min_requests": 5, "limits": LOOSE_CANARY}
    spec_a = _spec(
        top, "loan-default.yaml", A, f"s3://retrain-data/{A}/",
        gate={"floor": 0.3, "max_regression": 0.5}, canary=canary,
    )  # fmt: skip
    lgd = "simulator://loans?scenario=stable&rows=2000&seed=2"
    spec_b = _spec(top, "loss-given-default.yaml", B, lgd, gate={"floor": 1.0})
    _land(top, "week-1", simulate(2000, scenario="stable", seed=1))
    cli_ok(top, "retrain", "pipelines", "register", str(spec_a), "--work-pool", POOL)

    timings["first retrain through a worker"] = _first_retrain(top)
    timings["one full loop (monitor to promotion)"] = _drift_loop_and_alerts(top, spec_b)
    _rollback(top)
    timings["kill, crash hook, same run again"] = _killed_and_run_again(top)
    checked = _check_every_store(top)
    timings["whole test (after start-up)"] = time.monotonic() - started
    print(f"\n{checked}\n" + "\n".join(f"{k}: {v:.1f} s" for k, v in timings.items()))


def _first_retrain(top: Topology) -> float:
    """Step 1: A's first retrain, its trigger time two hours back (the drift below is then
    outside the cooldown, as a week later it would be). Seconds it took."""
    t = time.monotonic()
    back = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    first = wait_run(top, start_run(top, f"retrain-model/retrain-{A}", {"as_of": back}))
    summary = summary_of(top, A, first)
    assert (summary["outcome"], summary["champion"]) == ("promoted", 1), summary
    return time.monotonic() - t


def _drift_loop_and_alerts(top: Topology, spec_b: Path) -> float:
    """Steps 2 and 3: new data lands; monitor -> drift -> event -> retrain -> canary on live
    traffic -> promotion, while an alert for A folds into it and one for B (registered by
    spec now) starts B's first retrain. Seconds from the monitor's start to the promotion."""
    with Traffic(top, A) as traffic:
        _land(top, "week-2", simulate(2000, scenario="covariate_shift", seed=5, severity=1.5))
        t = time.monotonic()
        monitor = wait_run(top, start_run(top, f"monitor-drift/monitor-{A}", {}))
        assert monitor.state.is_completed(), monitor.state
        drift_run = newest_run(top, f"retrain-on-drift-{A}")
        cli_ok(top, "retrain", "pipelines", "register", str(spec_b), "--work-pool", POOL)
        _alert(top, A, "a-1")
        _alert(top, B, "b-1")
        loop = summary_of(top, A, wait_run(top, drift_run))
        took = time.monotonic() - t
        assert (loop["trigger"], loop["outcome"], loop["champion"]) == ("drift", "promoted", 2)
        assert loop["release_mode"] == "canary" and traffic.answered > 100
    b_first = summary_of(top, B, wait_run(top, newest_run(top, f"retrain-{B}")))
    assert (b_first["trigger"], b_first["outcome"]) == ("alert", "promoted")
    alerts = sql(top.env["RETRAIN_DATABASE_URL"], "select model, state from alerts order by id")
    assert [tuple(a) for a in alerts] == [(A, "folded"), (B, "submitted")]
    assert len(runs_of(top, f"retrain-{A}")) == 1  # the alert for A started nothing
    return took


def _rollback(top: Topology) -> None:
    """Step 4: the rollback deployment, started as an operator starts it."""
    cli_ok(top, "retrain", "pipelines", "run", A, "--rollback")
    rollback = wait_run(top, newest_run(top, f"rollback-{A}"))
    assert rollback.state.is_completed(), rollback.state.message
    assert [e.reason for e in events(top, A, ["model.rolled_back"])] == ["manual rollback"]
    assert _versions(top, A) and _champion(top, A) == 1


def _killed_and_run_again(top: Topology) -> float:
    """Step 5: a flow-run process killed mid-training ends Crashed; its hook records it and
    gives the slot back; the same run again completes with one new version, no duplicate."""
    t = time.monotonic()
    before = _versions(top, A)
    bigger = {"source": "simulator://loans?scenario=stable&rows=20000&seed=3"}
    doomed = start_run(top, f"retrain-model/retrain-{A}", bigger)
    _kill_while_training(top, doomed)
    crashed = wait_run(top, doomed, timeout_s=60)
    assert crashed.state.is_crashed(), crashed.state
    hooked = _until(
        "the crash hook's run.crashed",
        lambda: [e for e in events(top, A, ["run.crashed"]) if e.payload["run_id"] == str(doomed)],
    )
    with prefect(top) as client:  # given back by the hook, not left to its lease
        assert client.read_global_concurrency_limit_by_name(f"retrain-{A}").active_slots == 0
    retried = summary_of(
        top, A, wait_run(top, start_run(top, f"retrain-model/retrain-{A}", bigger))
    )
    after = _versions(top, A)
    assert len(after) == len(before) + 1, [v.version for v in after]
    assert len({v.bundle_digest for v in after}) == len(after)
    orphans = hooked[0].payload["candidates"]  # killed after registering: taken up, not redone
    assert retried["candidate_version"] == (orphans[0] if orphans else after[-1].version)
    return time.monotonic() - t


def _check_every_store(top: Topology) -> str:
    """Blobs in S3, rows in the three PostgreSQL databases, runs and artifacts in MLflow, no
    overlapping retrains, and both workers at work."""
    blobs = check_blobs_in_s3(top)
    crashed = {e.payload["run_id"] for e in events(top, A, ["run.crashed"])}
    finished = [
        v
        for v in [*_versions(top, A), *_versions(top, B)]
        if v.lineage.get("flow_run_id") not in crashed  # a killed run never finished its own
    ]
    runs = check_mlflow(top, finished)
    spans = check_no_overlap(top, A) + check_no_overlap(top, B)
    kinds = {row[0] for row in sql(top.env["RETRAIN_DATABASE_URL"], "select kind from events")}
    expected = {
        "retrain.started", "retrain.completed", "drift.detected", "gate.decision",
        "canary.weight", "model.rolled_back", "run.crashed", "retrain.requested",
    }  # fmt: skip
    assert expected <= kinds, expected - kinds
    flow_runs = sql(top.database_urls["prefect"], "select count(*) from flow_run")[0][0]
    mlflow_rows = sql(top.database_urls["mlflow"], "select count(*) from runs")[0][0]
    assert flow_runs >= 7 and mlflow_rows >= runs
    for worker in ("worker-1", "worker-2"):
        assert "Beginning flow run" in (top.tmp / f"{worker}.log").read_text(), worker
    return f"{blobs} blobs in S3, {runs} MLflow runs, {spans} retrains without overlap"


def _versions(top: Topology, model: str) -> list[Any]:
    reg = registry(top)
    try:
        found: list[Any] = reg.catalog.list_model_versions(model)
        return found
    finally:
        reg.close()


def _champion(top: Topology, model: str) -> int | None:
    reg = registry(top)
    try:
        champion: int | None = reg.catalog.get_alias(model, "champion")
        return champion
    finally:
        reg.close()
