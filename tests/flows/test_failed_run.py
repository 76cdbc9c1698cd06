"""A retrain that fails on its data says why once: a Failed flow run whose state message is
one line (stage, reason, what to do), one ``run.failed`` event that ``retrain models history``
shows, a run log without tracebacks; what the run stored is collected by ``gc`` later."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from registry.errors import NotFoundError, RunFailedError
from registry.localstore import LocalBlobStore
from registry.store import Registry
from retrain.cli import main
from retrain.cli.common import settings as cli_settings
from retrain.config.settings import Settings
from retrain.config.spec_store import register_spec
from retrain.config.specs import DEFAULT_SPECS_DIR, parse_spec
from retrain.config.wiring import build_registry
from tasks.data.simulator import simulate

MODEL = "loan-default"


@pytest.fixture
def flow_home(tmp_path: Path, home: Path, prefect_harness: None) -> Iterator[Registry]:
    """The registry of ``home`` (where the CLI looks), for flows run with its settings."""
    registry = build_registry(Settings(home=home))
    try:
        yield registry
    finally:
        registry.close()


def _register(registry: Registry, source: Path, *, contract: bool) -> None:
    raw = yaml.safe_load((DEFAULT_SPECS_DIR / f"{MODEL}.yaml").read_text())
    raw["dataset"]["source"] = str(source)
    if not contract:
        del raw["dataset"]["contract"]
    register_spec(registry, parse_spec(yaml.safe_dump(raw)))


def _fail(home: Path) -> tuple[Any, str]:
    """Run the flow (it fails); (the flow run as the Prefect API holds it, its log)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    from flows.retrain_model import retrain_model

    state = retrain_model(pipeline=MODEL, settings=Settings(home=home), return_state=True)
    with pytest.raises(RunFailedError):  # called in-process, the run raises its error
        state.result()
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    return run, "\n".join(log.message for log in logs)


def _history(home: Path) -> str:
    app = typer.Typer(add_completion=False)

    @app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def _retrain(ctx: typer.Context) -> None:
        main(ctx.args)

    cli_settings.cache_clear()
    result = CliRunner().invoke(app, ["models", "history", MODEL])
    cli_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result.output


def _says_why_once(registry: Registry, home: Path, stage: str, reason: str, todo: str) -> Any:
    """The checks every failed run passes; returns its ``run.failed`` event."""
    run, log = _fail(home)
    message = run.state.message
    assert run.state.is_failed()
    assert message.startswith(f"retrain of {MODEL} failed at {stage}: {reason}"), message
    assert message.endswith(todo) and "\n" not in message and "Traceback" not in message
    assert log.count(message) == 1 and "Traceback" not in log, log
    (event,) = registry.catalog.events(MODEL, kinds=["run.failed"])
    assert event.reason == message and event.payload["stage"] == stage
    assert event.payload["run_id"] == str(run.id) and event.versions == []
    batch = registry.catalog.latest_dataset(MODEL)
    assert batch is not None and event.payload["dataset_digest"] == batch.digest
    shown = _history(home)
    assert "run.failed" in shown and f"why the latest runs of {MODEL} failed:" in shown
    assert message in shown  # the whole line, beneath the table
    return event


def test_data_that_breaks_the_contract_fails_at_validate(flow_home: Registry, home: Path) -> None:
    broken = home.parent / "broken.parquet"
    simulate(2000, scenario="schema_break", seed=3).to_parquet(broken, index=False)
    _register(flow_home, broken, contract=True)
    todo = f"(`retrain registry ls --kind validation --model {MODEL}`)"
    event = _says_why_once(flow_home, home, "validate", "contract loans: ", todo)
    assert flow_home.catalog.list_model_versions(MODEL) == []

    # What the run stored: three snapshots, listed in its event; gc takes them once they are
    # older than the grace period (nothing else uses them), and keeps the validation report.
    stored = [entry["digest"] for entry in event.payload["snapshots"]]
    assert len(stored) == 3
    assert flow_home.gc(timedelta(hours=1), dry_run=False).collected == []  # too young
    assert isinstance(flow_home.blobs, LocalBlobStore)
    for info in flow_home.blobs.list():
        os.utime(flow_home.blobs.path_of(info.digest), (1_000_000_000, 1_000_000_000))
    collected = flow_home.gc(timedelta(hours=1), dry_run=False)
    assert sorted(b.digest for b in collected.collected) == sorted(stored)
    with pytest.raises(NotFoundError):
        flow_home.catalog.get_dataset(stored[0])
    report = flow_home.catalog.latest_artifact("validation", MODEL)
    assert report is not None and flow_home.get_bytes(report.digest)


def test_a_target_with_missing_values_fails_at_train(flow_home: Registry, home: Path) -> None:
    frame = simulate(2000, seed=4)
    frame.loc[frame.index[::7], "default"] = None
    source = home.parent / "holes.parquet"
    frame.to_parquet(source, index=False)
    _register(flow_home, source, contract=False)
    reason = "target 'default' has missing values"
    todo = "check the spec's target, task and features against the data (types, missing values)"
    _says_why_once(flow_home, home, "train", reason, todo)
    assert flow_home.catalog.list_model_versions(MODEL) == []
