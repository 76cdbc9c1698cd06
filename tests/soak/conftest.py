"""The soak world: three models kept fresh for weeks, compressed on a manual clock.

Everything the platform runs is real here: the registry (SQLite), the alert receiver's app
and dispatcher (alerts posted as HTTP requests), the one trigger decision, data contracts,
Evidently drift, Lightning training, the gate, the model server (its app, alias follower and
stats, in process) and the canary reading that server's stats. What Prefect would do is done
by the world's scheduler, on the same clock: cron dates come from Prefect's own schedule
model, a deployment run started by the receiver runs when the world next turns, and an outage
of the Prefect API is a launcher that refuses.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
import pytest

from registry.errors import LaunchError, MetricsUnavailableError
from registry.store import Registry
from retrain.config.spec_store import register_spec
from retrain.config.specs import DEFAULT_SPECS_DIR, PipelineSpec, load_spec
from retrain.testing import ManualClock, NullTracker
from retrain.testing_serving import InProcessServer, serve_in_process
from serving.faults import FaultInjector
from tasks.data.simulator import simulate
from tasks.pipeline.cycle import check_drift, retrain_when_due
from tasks.pipeline.recipe import PLAIN_STEPS, RetrainEnv, RetrainRequest
from tasks.pipeline.release_step import release_candidate
from tasks.release.metric_sources import MetricsSnapshot
from tasks.training.plan import TrainingRun

if TYPE_CHECKING:
    from tasks.release.preflight import ServerProbe

TOKEN = "soak-token"
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
ROWS = 3000
TRAFFIC_PER_S = 1.0  # predict requests per second of simulated time, during a release
SMALL = {
    "model": {"hidden_sizes": [16], "dropout": 0.0},
    "training": {"max_epochs": 2, "batch_size": 512, "patience": 1, "seed": 0},
    "drift": {"sample_rows": ROWS},
    "canary": {"steps": [50, 100], "interval_s": 60, "min_requests": 20, "watch_windows": 1},
}


def soak_specs() -> list[PipelineSpec]:
    """Three pipelines: a binary model on a weekly cron with a daily drift monitor, a
    regression model on its own cron that alerts retrain, and one moved by alerts only."""
    loans = load_spec(DEFAULT_SPECS_DIR / "loan-default.yaml").model_dump()
    lgd = load_spec(DEFAULT_SPECS_DIR / "loss-given-default.yaml").model_dump()
    early = {**loans, "name": "early-default"}
    plans = [
        (loans, "0 3 * * 1", "0 6 * * *", 24 * 60),
        (lgd, "0 4 * * 3", None, 24 * 60),
        (early, None, None, 12 * 60),
    ]
    specs = []
    for raw, retrain_cron, monitor_cron, cooldown in plans:
        merged = {**raw, **{k: {**raw.get(k, {}), **v} for k, v in SMALL.items()}}
        # Two epochs on 3,000 rows do not learn every declared direction: no behaviour rules.
        merged["gate"] = {**merged["gate"], "behaviour": None}
        merged["schedule"] = {"retrain_cron": retrain_cron, "monitor_cron": monitor_cron}
        merged["triggers"] = {"drift": True, "cooldown_minutes": cooldown}
        # Gate: a fair candidate passes, so what the soak checks is the loop, not the model.
        merged["gate"] = {**merged["gate"], "max_regression": 0.2, "latency_p95_ms": None}
        if raw["task"] == "binary":
            merged["gate"]["floor"] = 0.55
        merged.pop("drift", None)  # re-derived from the features by the spec itself
        merged["drift"] = {"sample_rows": ROWS}
        specs.append(PipelineSpec.model_validate(merged))
    return specs


class SoakLauncher:
    """Prefect's part for the receiver: runs are queued for the world to run on its clock;
    during an outage every launch is refused, as ``run_deployment`` would fail."""

    def __init__(self, clock: ManualClock) -> None:
        self._clock = clock
        self._ids = itertools.count(1)
        self.outage_until = 0.0
        self.refused = 0
        self.keys: dict[str, str] = {}
        self.queued: list[tuple[str, str, str]] = []  # (model, run id, trigger)
        self.active: set[str] = set()
        self.rollbacks: list[tuple[str, str]] = []

    def start_retrain(self, model: str, *, idempotency_key: str, reason: str) -> str:
        if self._clock.time() < self.outage_until:
            self.refused += 1
            raise LaunchError(f"Prefect API unreachable: could not start a retrain of {model}")
        if idempotency_key in self.keys:
            return self.keys[idempotency_key]
        run_id = f"run-{next(self._ids)}"
        self.keys[idempotency_key] = run_id
        self.queued.append((model, run_id, "alert"))
        self.active.add(run_id)
        return run_id

    def is_running(self, run_id: str) -> bool:
        return run_id in self.active


class ServerStats:
    """The canary's metrics source: the in-process server's own stats endpoint; a scrape can
    be made to miss a version's series once, as a failed Prometheus scrape does."""

    def __init__(self, world: World) -> None:
        self._world = world
        self.drop_in: dict[tuple[str, int], int] = {}  # series left out of the Nth snapshot
        self.dropped: list[tuple[str, int]] = []

    def snapshot(self, model: str) -> MetricsSnapshot:
        response = self._world.server.client.get(f"/v1/models/{model}:stats")
        if response.status_code != 200:
            raise MetricsUnavailableError(f"stats of {model}: HTTP {response.status_code}")
        snapshot = replace(
            MetricsSnapshot.from_server_stats(response.json()),
            taken_at=self._world.clock.monotonic(),
        )
        for (name, version), countdown in list(self.drop_in.items()):
            if name != model or snapshot.versions.get(version) is None:
                continue
            if countdown > 1:
                self.drop_in[(name, version)] = countdown - 1
                continue
            del self.drop_in[(name, version)]
            self.dropped.append((name, version))
            kept = {v: c for v, c in snapshot.versions.items() if v != version}
            snapshot = replace(snapshot, versions=kept)
        return snapshot


class InProcessProbe:
    """What a release asks the model server before its first step, over the in-process client."""

    url = "http://model-server"

    def __init__(self, world: World) -> None:
        self._world = world

    def get(self, path: str) -> httpx.Response:
        return self._world.server.client.get(path)


@dataclass
class Requests:
    """Every predict request the world sent, and what came back."""

    sent: int = 0
    answered: int = 0
    failed: list[str] = field(default_factory=list)


class World:
    """The platform on a manual clock, with a scheduler that does Prefect's part."""

    def __init__(self, root: Path, stack: contextlib.ExitStack) -> None:
        from starlette.testclient import TestClient

        from retrain.alerts.receiver import create_app

        self.root, self._stack = root, stack
        self.clock = ManualClock(START.timestamp())
        self.registry = stack.enter_context(
            contextlib.closing(
                Registry.open(f"sqlite:///{root / 'catalog.db'}", (root / "blobs").as_uri())
            )
        )
        self.registry.catalog.clock = lambda: self.now  # the log tells the world's time
        self.specs = {s.name: s for s in soak_specs()}
        for spec in self.specs.values():
            register_spec(self.registry, spec)
        self.faults = FaultInjector()
        self._server_stack: contextlib.ExitStack | None = None
        self.server = self._start_server()
        self.metrics = ServerStats(self)
        self.launcher = SoakLauncher(self.clock)
        app = create_app(
            self.registry, self.launcher, token=TOKEN, clock=self.clock.time, models_ttl_s=0.0
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.receiver = stack.enter_context(TestClient(app, base_url="http://receiver"))
        self.dispatcher = app.state.dispatcher
        self.dispatcher.stop()  # the world decides alerts when it turns, on its clock
        self.requests = Requests()
        self.runs: list[tuple[str, str, str, str]] = []  # (when, model, trigger, outcome)
        self.why: list[str] = []  # each run's outcome and why, for a failing test's message
        self.shifted: dict[str, range] = {}  # model -> days its production data is shifted
        self.restarts = 0
        self._restart_after: dict[str, float] = {}  # model -> seconds into its next release

    # -- time ------------------------------------------------------------------------------
    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.time(), UTC)

    def at(self, day: int, hour: int = 0, minute: int = 0) -> datetime:
        return START + timedelta(days=day, hours=hour, minutes=minute)

    def move_to(self, when: datetime) -> None:
        """Let time pass until ``when``; the server polls on the way. A moment the world was
        busy through (a release takes minutes) happens late, now, as it would in a queue."""
        gap = when.timestamp() - self.clock.time()
        if gap > 0:
            self.clock.advance(gap)
        self.server.poll()

    def stamp(self) -> str:
        """``d<day> HHh`` of now, for the record (a release takes minutes)."""
        days = (self.now - START).days
        return f"d{days} {self.now:%H}h"

    # -- the model server ------------------------------------------------------------------
    def _start_server(self) -> InProcessServer:
        self._server_stack = contextlib.ExitStack()
        server = self._server_stack.enter_context(
            serve_in_process(
                self.registry, sorted(self.specs), clock=self.clock, faults=self.faults
            )
        )
        self._stack.callback(self._server_stack.close)
        return server

    def restart_server(self) -> None:
        """Stop the model server and start a new one on the same registry (counters reset)."""
        assert self._server_stack is not None
        self._server_stack.close()
        self.server = self._start_server()
        self.restarts += 1

    def restart_during_release(self, model: str, *, after_s: float) -> None:
        """Restart the model server ``after_s`` seconds into ``model``'s next release."""
        self._restart_after[model] = after_s

    def fail_scrape_during_release(self, model: str, *, nth: int = 3) -> None:
        """Leave ``model``'s next candidate out of the ``nth`` snapshot it appears in."""
        self.metrics.drop_in[(model, self.next_version(model))] = nth

    def next_version(self, model: str) -> int:
        """The version number ``model``'s next candidate will get."""
        return len(self.registry.catalog.list_model_versions(model)) + 1

    def prefect_outage(self, until: datetime) -> None:
        """The Prefect API refuses every launch until ``until``."""
        self.launcher.outage_until = until.timestamp()

    def traffic(self, model: str, count: int) -> None:
        """``count`` predict requests for ``model``; each must be answered."""
        spec = self.specs[model]
        rows = _instances(model, spec)
        for i in range(count):
            instance = rows[(self.requests.sent + i) % len(rows)]
            response = self.server.client.post(
                f"/v1/models/{model}:predict",
                json={"instances": [instance]},
                headers={"X-Request-Key": f"{model}-{self.requests.sent + i}"},
            )
            if response.status_code == 200:
                self.requests.answered += 1
            else:
                self.requests.failed.append(f"{self.stamp()} {model}: {response.status_code}")
        self.requests.sent += count

    # -- runs ------------------------------------------------------------------------------
    def source(self, model: str) -> str:
        """Today's production data of ``model`` (a new seed each day, so digests differ)."""
        day = (self.now - START).days
        scenario = "covariate_shift" if day in self.shifted.get(model, ()) else "stable"
        seed = day * 10 + sorted(self.specs).index(model)
        return f"simulator://loans?scenario={scenario}&rows={ROWS}&seed={seed}"

    def retrain(self, model: str, trigger: str, run_id: str | None = None) -> str:
        """The ``retrain-model`` flow's body for ``model``, its canary fed by live traffic."""
        spec, started = self.specs[model], self.stamp()
        release = partial(
            release_candidate, sleep=partial(self._release_sleep, model), clock=self.clock.monotonic
        )
        env = RetrainEnv(
            metrics=self.metrics,
            run=TrainingRun(tracker=NullTracker(), checkpoint_root=self.root / "checkpoints"),
            actor="retrain-model",
            server=cast("ServerProbe", InProcessProbe(self)),
        )
        steps = replace(PLAIN_STEPS, release=release)
        request = RetrainRequest(self.source(model), trigger=trigger)
        summary = retrain_when_due(
            self.registry, spec, request, env, now=self.now, run_id=run_id, steps=steps, say=_quiet
        )
        outcome = summary.outcome if summary.outcome != "skipped" else "folded"
        self.runs.append((started, model, trigger, outcome))
        reasons = [summary.release_reason, *summary.gate_reasons]
        self.why.append(f"{started} {model} {outcome}: {'; '.join(r for r in reasons if r)}")
        return outcome

    def _release_sleep(self, model: str, seconds: float) -> None:
        """A release waiting: time passes, the server follows the registry, clients call."""
        before = self.clock.time()
        self.clock.advance(seconds)
        left = self._restart_after.get(model)
        if left is not None:
            if left <= seconds:
                del self._restart_after[model]
                self.restart_server()
            else:
                self._restart_after[model] = left - seconds
        self.server.poll()
        due = int(self.clock.time() * TRAFFIC_PER_S) - int(before * TRAFFIC_PER_S)
        self.traffic(model, due)

    def monitor(self, model: str) -> str:
        """The ``monitor-drift`` flow's body; a requested retrain runs as the drift deployment."""
        from tasks.data.sources import load_frame

        frame = load_frame(self.source(model))
        result = check_drift(
            self.registry, self.specs[model], frame, now=self.now, publish=False, say=_quiet
        )
        if result.requested:
            return self.retrain(model, "drift", run_id=f"drift-{self.stamp()}")
        return result.retrain

    # -- alerts ----------------------------------------------------------------------------
    def alert(self, body: dict[str, Any], route: str = "alertmanager") -> int:
        """Post an alert to the receiver; returns the HTTP status."""
        response = self.receiver.post(
            f"/alerts/{route}",
            content=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        return response.status_code

    def turn(self) -> None:
        """What happens between two moments: the receiver decides (retrying what Prefect
        refused), and the runs it started are picked up and run."""
        self.dispatcher.sweep(older_than_s=0.0)
        self.dispatcher.run_pending()
        while self.launcher.queued:
            model, run_id, trigger = self.launcher.queued.pop(0)
            try:
                self.retrain(model, trigger, run_id=run_id)
            finally:
                self.launcher.active.discard(run_id)


def _quiet(_line: str) -> None:
    """Where the world's runs tell their decisions: the record is the registry's event log."""


_ROWS: dict[str, list[dict[str, Any]]] = {}


def _instances(model: str, spec: PipelineSpec) -> list[dict[str, Any]]:
    if model not in _ROWS:
        frame = simulate(200, seed=99)[spec.features.all]
        _ROWS[model] = json.loads(frame.to_json(orient="records"))
    return _ROWS[model]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A fresh soak world under ``tmp_path``."""
    with contextlib.ExitStack() as stack:
        yield World(tmp_path, stack)
