"""What the topology test reads back, each where it is kept: flow runs in Prefect, events and
rows in the registry's PostgreSQL database, blobs in S3, runs and artifacts in MLflow."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import create_engine, text
from topology_stack import Topology

RUN_TIMEOUT_S = 150.0


@contextmanager
def prefect(top: Topology) -> Iterator[Any]:
    """A Prefect client on the topology's server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: top.urls["prefect"]}),
        get_client(sync_client=True) as client,
    ):
        yield client


def start_run(top: Topology, deployment: str, parameters: dict[str, Any]) -> UUID:
    """Start a run of ``deployment`` (``flow/name``) with ``parameters``, as the UI does."""
    with prefect(top) as client:
        found = client.read_deployment_by_name(deployment)
        run_id: UUID = client.create_flow_run_from_deployment(found.id, parameters=parameters).id
        return run_id


def wait_run(top: Topology, run_id: UUID, timeout_s: float = RUN_TIMEOUT_S) -> Any:
    """The run once in a final state; fails with the workers' logs on a timeout."""
    deadline = time.monotonic() + timeout_s
    with prefect(top) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.is_final():
                return run
            time.sleep(1.0)
    logs = "\n".join(top.tail(w, 60) for w in ("worker-1", "worker-2"))
    pytest.fail(f"run {run_id} not finished in {timeout_s:.0f} s:\n{logs}")


def runs_of(top: Topology, deployment: str) -> list[Any]:
    """Every flow run of the deployment named ``deployment``, oldest first."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with prefect(top) as client:
        names = DeploymentFilter(name=DeploymentFilterName(any_=[deployment]))
        return sorted(client.read_flow_runs(deployment_filter=names), key=lambda r: r.created)


def newest_run(top: Topology, deployment: str, *, after: int = 0, timeout_s: float = 60) -> UUID:
    """The id of the newest run of ``deployment`` once it has more than ``after`` runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = runs_of(top, deployment)
        if len(runs) > after:
            run_id: UUID = runs[-1].id
            return run_id
        time.sleep(1.0)
    pytest.fail(f"no new run of {deployment} in {timeout_s:.0f} s")


def registry(top: Topology) -> Any:
    """A registry client with the settings every process has."""
    from retrain.config.settings import Settings
    from retrain.config.wiring import build_registry

    env = top.env
    return build_registry(
        Settings(
            home=top.tmp / "test-home",
            database_url=env["RETRAIN_DATABASE_URL"],
            blob_url=env["RETRAIN_BLOB_URL"],
            s3_endpoint_url=env["RETRAIN_S3_ENDPOINT_URL"],
            s3_region="us-east-1",
        )
    )


def events(top: Topology, model: str, kinds: list[str]) -> list[Any]:
    reg = registry(top)
    try:
        found: list[Any] = reg.catalog.events(model, kinds=kinds)
        return found
    finally:
        reg.close()


def summary_of(top: Topology, model: str, run: Any) -> dict[str, Any]:
    """What the completed retrain ``run`` recorded: its trigger decision (``retrain.started``
    or ``retrain.skipped``, naming the run) and, when it went ahead, the ``retrain.completed``
    after it (one retrain of a model runs at a time)."""
    assert run.state.is_completed(), (run.name, run.state.type, run.state.message)
    log = events(top, model, ["retrain.started", "retrain.skipped", "retrain.completed"])
    mine = [e for e in log if e.payload.get("flow_run_id") == str(run.id)]
    assert mine, f"{run.name} completed but recorded no trigger decision: {log}"
    if mine[-1].kind == "retrain.skipped":
        return {"outcome": "skipped", "reason": mine[-1].reason}
    done = [e for e in log if e.kind == "retrain.completed" and e.id > mine[-1].id]
    assert done, f"{run.name} started a retrain but recorded no end: {log}"
    return dict(done[0].payload)


def sql(url: str, query: str) -> list[Any]:
    """Rows of ``query`` on the PostgreSQL database at ``url``."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(query)))
    finally:
        engine.dispose()


def check_blobs_in_s3(top: Topology) -> int:
    """``retrain registry verify`` passes and every catalogued blob is an object in S3."""
    verified = top.cli("retrain", "registry", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    digests = {row[0] for row in sql(top.env["RETRAIN_DATABASE_URL"], "select digest from blobs")}
    s3 = top.s3()
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket="retrain-blobs", Prefix="registry/sha256/"
    ):
        keys |= {item["Key"].rsplit("/", 1)[-1] for item in page.get("Contents", [])}
    missing = {d for d in digests if d.removeprefix("sha256:") not in keys}
    assert digests and not missing, f"catalogued blobs missing from S3: {sorted(missing)}"
    return len(digests)


def check_mlflow(top: Topology, versions: list[Any]) -> int:
    """Each trained version's MLflow run finished on the server, its artifacts in S3."""
    api = f"{top.urls['mlflow']}/api/2.0/mlflow"
    experiment = httpx.get(
        f"{api}/experiments/get-by-name", params={"experiment_name": "retrain"}
    ).json()["experiment"]
    assert experiment["artifact_location"].startswith("mlflow-artifacts:"), experiment
    checked = 0
    for version in versions:
        run_id = version.lineage.get("mlflow_run_id")
        assert run_id, f"{version.model} v{version.version} has no MLflow run"
        run = httpx.get(f"{api}/runs/get", params={"run_id": run_id}).json()["run"]
        tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
        assert run["info"]["status"] == "FINISHED", run["info"]
        assert tags.get("registry_version") == str(version.version), tags
        listed = httpx.get(f"{api}/artifacts/list", params={"run_id": run_id}).json()
        assert "bundle_manifest.json" in {f["path"] for f in listed.get("files", [])}, listed
        checked += 1
    s3 = top.s3()
    stored = s3.list_objects_v2(Bucket="mlflow-artifacts").get("KeyCount", 0)
    assert stored >= checked, f"{stored} MLflow artifacts in S3 for {checked} runs"
    return checked


def check_no_overlap(top: Topology, model: str) -> int:
    """From each retrain's start (``retrain.started``, taken inside the model's slot) to its
    run's end, no two retrains of ``model`` overlap."""
    ends = {}
    with prefect(top) as client:
        for event in events(top, model, ["retrain.started"]):
            run = client.read_flow_run(UUID(event.payload["flow_run_id"]))
            ends[event.created_at] = run.end_time or run.state.timestamp
    spans = sorted(ends.items())
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"retrains of {model} overlap: {spans}"
    return len(spans)


def cli_ok(top: Topology, *args: str) -> str:
    """Run an operator command; its output, or a failure showing it."""
    done = top.cli(*args)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


__all__ = [
    "RUN_TIMEOUT_S",
    "check_blobs_in_s3",
    "check_mlflow",
    "check_no_overlap",
    "cli_ok",
    "events",
    "newest_run",
    "prefect",
    "registry",
    "runs_of",
    "sql",
    "start_run",
    "summary_of",
    "wait_run",
]
