"""A retrain that died after registering its candidate is taken up by the next run of the same
inputs: no second version of the same bundle, and the candidate goes on to its gate and
release. A run that finished keeps its version; ``force`` then trains a new one."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.store import Registry
from retrain.config.specs import DEFAULT_SPECS_DIR, parse_spec
from retrain.testing import NullTracker, ScriptedMetricsSource
from tasks.pipeline.plan import PipelinePlan
from tasks.pipeline.recipe import PLAIN_STEPS, RetrainEnv, RetrainRequest, Steps, run_retrain
from tasks.pipeline.resume import train_or_resume
from tasks.release.preflight import ServerProbe
from tasks.training.plan import TrainingRun

MODEL = "loan-default"
SOURCE = "simulator://loans?scenario=stable&rows=1500&seed=1"


class WorkerKilled(BaseException):
    """The process of a run dies (as SIGKILL would end it): nothing after it runs."""


def _small_plan() -> PipelinePlan:
    """The shipped loan pipeline on 1,500 simulated rows, a tiny net, two epochs."""
    spec = yaml.safe_load((DEFAULT_SPECS_DIR / "loan-default.yaml").read_text())
    spec["dataset"]["source"] = SOURCE
    spec["model"] = {"hidden_sizes": [16]}
    spec["training"].update(max_epochs=2, batch_size=256)
    spec["gate"].update(floor=0.3, latency_p95_ms=None, max_regression=0.5)
    spec["gate"].pop("behaviour", None)  # two epochs do not learn every direction
    return dataclasses.replace(parse_spec(yaml.safe_dump(spec)).plan, contract=None)


def _dies_at_release(*args: Any, **kwargs: Any) -> Any:
    raise WorkerKilled


@pytest.fixture
def env(tmp_path: Path, dead_url: str) -> RetrainEnv:
    return RetrainEnv(
        metrics=ScriptedMetricsSource([]),
        run=TrainingRun(tracker=NullTracker(), checkpoint_root=tmp_path / "checkpoints"),
        server=ServerProbe(dead_url),
    )


def test_the_next_run_takes_up_the_candidate_a_dead_run_registered(
    registry: Registry, env: RetrainEnv
) -> None:
    plan, request = _small_plan(), RetrainRequest(SOURCE, trigger="manual")
    steps = dataclasses.replace(PLAIN_STEPS, train=train_or_resume)
    dying: Steps = dataclasses.replace(steps, release=_dies_at_release)
    with pytest.raises(WorkerKilled):
        run_retrain(registry, plan, request, env, dying)
    [orphan] = registry.catalog.list_model_versions(MODEL)
    assert orphan.status == "candidate"

    summary = run_retrain(registry, plan, request, env, steps)

    assert (summary.candidate_version, summary.outcome) == (orphan.version, "promoted")
    versions = registry.catalog.list_model_versions(MODEL)
    assert [v.version for v in versions] == [orphan.version]
    assert registry.catalog.get_alias(MODEL, "champion") == orphan.version
    # Finished now: the same inputs are reused, and `force` trains a version of its own.
    assert run_retrain(registry, plan, request, env, steps).outcome == "reused"
    forced = run_retrain(registry, plan, dataclasses.replace(request, force=True), env, steps)
    assert forced.candidate_version == orphan.version + 1
    bundles = [v.bundle_digest for v in registry.catalog.list_model_versions(MODEL)]
    assert len(bundles) == 2
