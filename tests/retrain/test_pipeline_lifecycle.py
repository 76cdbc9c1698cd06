"""`retrain pipelines pause|resume|rm` under a real (temporary) Prefect API: what stops, what
starts again, what is kept, and what the served deployments and the alert receiver do."""

from __future__ import annotations

import asyncio
import io
import uuid
from pathlib import Path

import pytest
import yaml

from registry.errors import NotFoundError
from registry.store import Registry
from retrain.alerts.dispatch import AlertDispatcher
from retrain.alerts.launchers import RecordingLauncher
from retrain.config.settings import Settings
from retrain.config.spec_store import get_registered_spec, list_registered_pipelines
from retrain.config.specs import DEFAULT_SPECS_DIR
from retrain.config.wiring import build_registry
from retrain.testing_cli import run_cli as retrain

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _deployment(name: str) -> tuple[bool, bool] | None:
    """(paused, schedule active) of ``retrain-model/retrain-<name>``, or None if it is gone."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            found = client.read_deployment_by_name(f"retrain-model/retrain-{name}")
        except ObjectNotFound:
            return None
    return found.paused, bool(found.schedules and found.schedules[0].active)


@pytest.fixture
def pipeline(tmp_path: Path, home: Path) -> tuple[str, Path]:
    """A copy of the loan pipeline under a fresh name, registered with its deployments."""
    name = f"life-{uuid.uuid4().hex[:8]}"
    raw = yaml.safe_load((DEFAULT_SPECS_DIR / "loan-default.yaml").read_text())
    raw.update(name=name)
    raw["dataset"]["source"] = "simulator://loans?rows=2000&seed=1"
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(yaml.safe_dump(raw))
    code, output = retrain("pipelines", "register", str(spec))
    assert code == 0, output
    assert _deployment(name) == (False, True)
    return name, spec


def _dispatch_alert(registry: Registry, name: str) -> tuple[str, str | None, int]:
    """A firing retrain alert for ``name``, decided now: (state, reason, retrains started)."""
    launcher = RecordingLauncher()
    dispatcher = AlertDispatcher(
        registry,
        launcher,
        models=lambda: {p.name: p for p in list_registered_pipelines(registry)},
    )
    alert, _ = registry.catalog.add_alert(
        uuid.uuid4().hex, source="generic", model=name, status="firing", payload={}
    )
    state = dispatcher.decide(alert)
    [stored] = registry.catalog.recent_alerts(model=name, limit=1)
    return state, stored.reason, len(launcher.calls)


def test_pause_resume_and_register_again_while_paused(
    pipeline: tuple[str, Path], home: Path
) -> None:
    name, spec = pipeline
    code, output = retrain("pipelines", "pause", name)
    assert code == 0, output
    assert f"paused pipeline {name}" in output
    assert _deployment(name) == (True, True)  # paused: its schedule makes no runs
    code, listing = retrain("pipelines", "ls")
    assert any(name in line and "paused" in line for line in listing.splitlines())
    with build_registry(Settings(home=home)) as registry:
        assert _dispatch_alert(registry, name) == ("ignored", "paused", 0)

    # Registering a changed spec keeps it paused: applying deployments never resumes it.
    spec.write_text(spec.read_text().replace("cooldown_minutes: 60", "cooldown_minutes: 30"))
    code, output = retrain("pipelines", "register", str(spec))
    assert code == 0, output
    assert "(paused)" in output
    assert _deployment(name) == (True, True)

    code, output = retrain("pipelines", "resume", name)
    assert code == 0, output
    assert _deployment(name) == (False, True)
    with build_registry(Settings(home=home)) as registry:
        state, _, started = _dispatch_alert(registry, name)
        assert (state, started) == ("submitted", 1)
        kinds = [e.kind for e in registry.catalog.events(name)]
    assert kinds.index("pipeline.paused") < kinds.index("pipeline.resumed")  # models history
    code, output = retrain("pipelines", "resume", name)
    assert code == 0 and f"pipeline {name} was already resumed" in output


def test_rm_deletes_the_deployments_and_keeps_the_history(
    pipeline: tuple[str, Path], home: Path
) -> None:
    name, spec = pipeline
    code, output = retrain("pipelines", "rm", name)
    assert code == 0, output
    assert _deployment(name) is None
    code, listing = retrain("pipelines", "ls")
    assert name not in listing
    with build_registry(Settings(home=home)) as registry:
        with pytest.raises(NotFoundError, match="was removed"):
            get_registered_spec(registry, name)
        assert _dispatch_alert(registry, name)[:2] == ("ignored", "unknown model")
        assert registry.catalog.latest_artifact("contract", name) is not None  # kept
        assert [e.kind for e in registry.catalog.events(name)][-1] == "pipeline.removed"
    code, output = retrain("pipelines", "pause", name)
    assert code == 2 and "was removed; register its spec again" in output

    code, output = retrain("pipelines", "register", str(spec))  # brings it back
    assert code == 0, output
    assert _deployment(name) == (False, True)


def test_served_deployments_drop_a_removed_pipeline(pipeline: tuple[str, Path], home: Path) -> None:
    from prefect.runner import Runner
    from prefect.settings import get_current_settings

    from retrain.config.pipeline_state import set_pipeline_state
    from retrain.local import serve_loop
    from retrain.local.serve_loop import LiveServer, RegistrySpecs

    name, _ = pipeline
    api = get_current_settings().api.url
    assert api
    said = io.StringIO()
    with build_registry(Settings(home=home)) as registry:
        server = LiveServer(RegistrySpecs(registry, [name]), api, out=said)
        runner = Runner(name="test-deployments", pause_on_shutdown=False)
        asyncio.run(server._sync(runner, announce=True))
        assert set(server.served) == {name}

        set_pipeline_state(registry, name, "paused")
        asyncio.run(server._sync(runner, announce=True))
        assert _deployment(name) == (True, True)  # served paused
        last = said.getvalue().splitlines()[-1]
        assert last.startswith(f"updated pipeline {name} (") and last.endswith(") (paused)")

        set_pipeline_state(registry, name, "removed")
        with pytest.raises(serve_loop._Restart):  # a new Runner takes over, without it
            asyncio.run(server._sync(runner, announce=True))
    assert server.served == {}
    assert said.getvalue().splitlines()[-1] == f"no longer serving pipeline {name} (removed)"
    assert _deployment(name) is None
