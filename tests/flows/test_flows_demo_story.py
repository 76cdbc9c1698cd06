"""End to end: the demo's story, on small data, checked against the registry's record."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from retrain.config.settings import Settings
from retrain.config.wiring import build_registry

MODEL = "loan-default"


@pytest.mark.timeout(900)
def test_the_closed_loop_story(tmp_path: Path, prefect_harness: None) -> None:
    from retrain.local.demo import run_demo

    started = datetime.now(UTC)
    rows = run_demo(Settings(home=tmp_path), rows=10_000, epochs=6)
    decisions = [str(r["decision"]) for r in rows]
    what = [str(r["what happened"]) for r in rows]

    assert decisions[0].startswith("gate pass, promoted")  # v1 bootstrapped as champion
    assert "no drift" in decisions[1]  # a quiet week raises nothing
    assert "ml.drift.detected" in decisions[2]  # the drifted week is flagged
    assert what[3].startswith("alert x25 → 1 retrain (25× 202)")  # a storm starts one run
    assert decisions[3].startswith("gate pass, canary promoted")  # v2 promoted via the canary
    assert decisions[4].startswith("gate fail")  # the poisoned batch stops at the gate
    assert decisions[5].startswith("gate pass, canary aborted")  # the faulty canary is undone

    # One home: the registry, MLflow and Prefect state `retrain up` opens afterwards.
    assert (tmp_path / "registry.db").is_file() and (tmp_path / "mlflow.db").is_file()
    _runs_keep_their_logs_and_reports_link_over_http(started)
    registry = build_registry(Settings(home=tmp_path))
    try:
        catalog = registry.catalog
        assert catalog.get_alias(MODEL, "champion") == 2
        assert catalog.get_alias(MODEL, "canary") is None
        statuses = {v.version: v.status for v in catalog.list_model_versions(MODEL)}
        assert statuses[3] == "rejected"
        assert statuses[4] != "champion"
        assert len(catalog.events(MODEL, kinds=["canary.promoted"])) == 2  # v1 direct, v2 canary
        assert len(catalog.events(MODEL, kinds=["canary.aborted"])) == 1
    finally:
        registry.close()


def _runs_keep_their_logs_and_reports_link_over_http(since: datetime) -> None:
    """Every flow run of the demo has its logs in Prefect, and the drift report's link
    artifact points at the blob server `retrain up` starts, as an .html page."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        LogFilter,
        LogFilterFlowRunId,
    )

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
        demo_runs = [
            r
            for r in runs
            if r.parameters.get("pipeline") == MODEL and r.created and r.created >= since
        ]
        assert len(demo_runs) >= 6  # five retrains and two monitors, at least
        for run in demo_runs:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            assert logs, f"flow run {run.name} has no logs in Prefect"
        links = client.read_artifacts(  # a link artifact is markdown: [text](link)
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"drift-{MODEL}-report"]))
        )
    reports = [str(a.data) for a in links if a.created and a.created >= since]
    assert reports
    for markdown in reports:  # [Evidently drift report](<link>)
        link = markdown.split("](", 1)[1].rstrip(")")
        assert link.startswith("http://127.0.0.1:8091/blobs/sha256/")
        assert link.endswith("/drift-report.html")
