"""A retrain whose process dies is cleaned up by the flow's crash hook: the traffic of the
release it held goes back to the champion at once and a ``run.crashed`` event says so; a
step meeting a transient store or network failure is tried again, a step refusing bad data
is not."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from botocore.exceptions import EndpointConnectionError

from registry.errors import DataSourceError, DataValidationError, StoreUnavailableError
from registry.release import (
    CANARY_ALIAS,
    LOCK_ALIAS,
    ReleaseStateReader,
    acquire_release_lock,
    publish_weight,
    repair_releases,
)
from registry.store import Registry
from retrain.config.settings import Settings
from tasks.pipeline.crashes import CRASHED_RUN_EVENT, clean_up_dead_run

MODEL = "loans"
DEAD, LIVE = "run-that-died", "run-still-alive"


def _version_of_run(registry: Registry, run_id: str) -> int:
    """A candidate registered by the flow run ``run_id`` (its lineage names the run)."""
    digest = registry.put_bytes(f"bundle of {run_id}".encode())
    record = registry.catalog.register_model_version(
        MODEL, digest, metrics={}, lineage={"flow_run_id": run_id}, reason="test"
    )
    return record.version


def _in_canary(registry: Registry, version: int, weight: float) -> None:
    """``version`` holds the release lock (a lease ten minutes long) and ``weight``% traffic."""
    catalog = registry.catalog
    acquire_release_lock(catalog, MODEL, version, ttl_s=600, actor="retrain-model")
    catalog.set_alias(MODEL, CANARY_ALIAS, version, expected=None, reason="canary", actor="t")
    publish_weight(catalog, MODEL, version, weight, actor="retrain-model")


@pytest.fixture
def champion(registry: Registry) -> int:
    digest = registry.put_bytes(b"champion bundle")
    catalog = registry.catalog
    version = catalog.register_model_version(MODEL, digest, metrics={}, lineage={}).version
    catalog.set_alias(MODEL, "champion", version, expected=None, reason="first", actor="t")
    return version


def test_a_dead_runs_canary_goes_back_to_the_champion_at_once(
    registry: Registry, champion: int
) -> None:
    candidate = _version_of_run(registry, DEAD)
    _in_canary(registry, candidate, 25.0)
    # Without the hook, the dead release keeps its lock and canary until its lease runs out.
    assert repair_releases(registry.catalog, [MODEL]) == []
    assert ReleaseStateReader(registry.catalog).read(MODEL).weight == 25.0

    done = clean_up_dead_run(
        registry, MODEL, DEAD, ended="Crashed", message="Process exited with status code: -9"
    )

    state = ReleaseStateReader(registry.catalog).read(MODEL)
    assert (state.champion, state.canary, state.weight, state.locked_by) == (
        champion, None, 0.0, None,
    )  # fmt: skip
    assert (done.versions, done.released) == ([candidate], True)
    [event] = registry.catalog.events(MODEL, kinds=[CRASHED_RUN_EVENT])
    assert event.versions == [candidate]
    assert event.reason == (
        f"retrain run {DEAD} ended crashed: Process exited with status code: -9"
    )
    assert event.payload["candidates"] == [candidate] and event.payload["released"] is True
    # The candidate stays a candidate: the next run of the same inputs takes it up.
    assert registry.catalog.get_model_version(MODEL, candidate).status == "candidate"


def test_another_runs_live_release_is_left_alone(registry: Registry, champion: int) -> None:
    orphan = _version_of_run(registry, DEAD)
    releasing = _version_of_run(registry, LIVE)
    _in_canary(registry, releasing, 10.0)

    done = clean_up_dead_run(registry, MODEL, DEAD, ended="Cancelling")

    aliases = registry.catalog.aliases(MODEL)
    assert (aliases.get(LOCK_ALIAS), aliases.get(CANARY_ALIAS)) == (releasing, releasing)
    assert ReleaseStateReader(registry.catalog).read(MODEL).weight == 10.0
    assert (done.versions, done.released) == ([orphan], False)
    [event] = registry.catalog.events(MODEL, kinds=[CRASHED_RUN_EVENT])
    assert event.reason == f"retrain run {DEAD} ended cancelling"


@pytest.mark.usefixtures("prefect_harness")
def test_the_crash_hook_uses_the_workers_settings(
    registry: Registry,
    settings: Settings,
    champion: int,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from prefect.client.schemas.objects import FlowRun
    from prefect.states import Crashed

    from flows.hooks import end_dead_run
    from flows.retrain_model import retrain_model

    assert end_dead_run in retrain_model.on_crashed_hooks
    assert end_dead_run in retrain_model.on_cancellation_hooks
    run = FlowRun(id=uuid4(), flow_id=uuid4(), name="killed", parameters={"pipeline": MODEL})
    candidate = _version_of_run(registry, str(run.id))
    _in_canary(registry, candidate, 50.0)
    monkeypatch.setenv("RETRAIN_HOME", str(settings.home))
    flow_runs = logging.getLogger("prefect.flow_runs")  # Prefect's loggers do not propagate
    flow_runs.addHandler(caplog.handler)
    try:
        end_dead_run(None, run, Crashed(message="Flow run infrastructure exited with code -9"))
    finally:
        flow_runs.removeHandler(caplog.handler)

    assert registry.catalog.aliases(MODEL).get(CANARY_ALIAS) is None
    [event] = registry.catalog.events(MODEL, kinds=[CRASHED_RUN_EVENT])
    assert event.payload["run_id"] == str(run.id) and event.payload["state"] == "Crashed"
    said = [r.getMessage() for r in caplog.records]
    told = f"run of {MODEL} ended Crashed: its release cleared, retrain slot left to its lease"
    assert f"{told}; candidates kept for the next run: v{candidate}" in said


@pytest.mark.usefixtures("prefect_harness")
def test_a_hook_that_cannot_reach_the_registry_only_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect.client.schemas.objects import FlowRun
    from prefect.states import Crashed

    from flows.hooks import end_dead_run

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("RETRAIN_HOME", str(blocked / "home"))
    run = FlowRun(id=uuid4(), flow_id=uuid4(), name="killed", parameters={"pipeline": MODEL})
    caplog.set_level(logging.WARNING)
    end_dead_run(None, run, Crashed(message="gone"))  # never raises
    assert any(
        r.getMessage().startswith(f"could not clean up after run {run.id} of {MODEL}: ")
        for r in caplog.records
    )


@pytest.mark.usefixtures("prefect_harness")
def test_a_dead_runs_retrain_slot_is_given_back_at_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import flow as flow_decorator
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    from flows.context import flow_run_id, retrain_limit_name
    from flows.hooks import SLOT_LEASE_LABEL, end_dead_run, retrain_slot
    from retrain.deployments import create_retrain_limits

    model = "slot-model"
    create_retrain_limits([model])
    limit = retrain_limit_name(model)

    @flow_decorator(name="holds-the-slot")
    def holds_the_slot() -> str:
        with retrain_slot(model), get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(str(flow_run_id())))
            return str(run.labels[SLOT_LEASE_LABEL])

    labelled = holds_the_slot()  # a run that ends normally gives its slot back itself
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(limit).active_slots == 0
        # A run killed while holding the slot: its lease, labelled, is never released by it.
        lease = client.increment_concurrency_slots_with_lease(
            names=[limit], slots=1, mode="concurrency", lease_duration=600
        ).json()["lease_id"]
        run = client.create_flow_run(holds_the_slot, state=Crashed(message="killed"))
        client.update_flow_run_labels(run.id, {SLOT_LEASE_LABEL: lease})
        assert client.read_global_concurrency_limit_by_name(limit).active_slots == 1
    assert UUID(labelled)
    monkeypatch.setenv("RETRAIN_HOME", str(settings.home))
    run.parameters = {"pipeline": model}

    end_dead_run(None, run, Crashed(message="killed"))

    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(limit).active_slots == 0


def _flaky(errors: list[BaseException]) -> tuple[Callable[[], str], list[int]]:
    """A step that raises each of ``errors`` in turn, then answers ``"done"``."""
    calls: list[int] = []

    def step() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "done"

    return step, calls


def _unreachable_s3() -> DataSourceError:
    try:
        raise EndpointConnectionError(endpoint_url="http://s3.internal:9000")
    except EndpointConnectionError as exc:
        try:
            raise DataSourceError("cannot read s3://data/loans: could not connect") from exc
        except DataSourceError as wrapped:
            return wrapped


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize(
    ("errors", "calls", "outcome"),
    [
        ([StoreUnavailableError("S3 is down"), StoreUnavailableError("S3 is down")], 3, "done"),
        ([_unreachable_s3()], 2, "done"),
        ([DataValidationError("age: 12 rows below 18", result=None)], 1, DataValidationError),
        ([StoreUnavailableError("down")] * 4, 4, StoreUnavailableError),
    ],
    ids=["store-outage", "network-under-a-source-error", "bad-data", "outage-outlasts-retries"],
)
def test_a_step_retries_transient_failures_only(
    errors: list[BaseException], calls: int, outcome: Any
) -> None:
    from prefect import task

    from tasks.pipeline.retries import TRANSIENT_RETRIES

    step, made = _flaky(errors)
    # The shipped options, with the waits between tries taken out.
    retrying = task(name="step", **{**TRANSIENT_RETRIES, "retry_delay_seconds": 0})(step)
    if outcome == "done":
        assert retrying() == "done"
    else:
        with pytest.raises(outcome):
            retrying()
    assert len(made) == calls


def test_every_retrain_step_but_the_release_retries() -> None:
    from tasks.pipeline.retries import RETRY_DELAYS_S, retry_when_transient
    from tasks.pipeline_tasks import PREFECT_STEPS
    from tasks.release_tasks import repair_model_releases, roll_back_model

    steps = ("load", "prepare", "validate", "find_reusable", "drift", "train", "gate", "record")
    for name in steps:
        face = getattr(PREFECT_STEPS, name)
        assert (face.retries, face.retry_delay_seconds) == (3, RETRY_DELAYS_S), name
        assert face.retry_condition_fn is retry_when_transient, name
    release: Any = PREFECT_STEPS.release
    assert release.retries == 0
    assert (roll_back_model.retries, repair_model_releases.retries) == (0, 3)
