"""``retrain demo``: weeks of production on embedded defaults, told as they happen.

v1 is bootstrapped as champion; traffic drifts; the monitor flags it and an Alertmanager-style
alert (sent 25 times) starts exactly one retrain; v2 passes the gate and is promoted through
the canary; a poisoned batch is rejected at the gate; a candidate that misbehaves in
production is rolled back by the canary analysis. Everything runs for real: Prefect flows,
Great Expectations, Evidently, Lightning, the registry, the model server and the webhook.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from retrain.config.spec_store import register_spec
from retrain.local.demo_home import prepare_demo_home, print_where_to_look
from retrain.local.demo_services import DemoServices
from retrain.local.demo_support import (
    MODEL,
    DemoClock,
    Timeline,
    demo_spec,
    free_port,
    post_alert,
    print_decisions,
    wait_for_alert_run,
    write_week,
)
from retrain.terminal import console, render_table
from tasks.pipeline.runs import RetrainSummary

if TYPE_CHECKING:
    from retrain.config.settings import Settings

__all__ = ["run_demo"]


def run_demo(
    base: Settings, *, fast: bool = False, rows: int | None = None, epochs: int | None = None
) -> list[dict[str, Any]]:
    """Run the story in ``base.home`` (the platform's state there is started afresh), the
    home ``retrain up`` opens afterwards: Prefect runs land in ``home/prefect``, the same
    database its Prefect server uses, with their logs.

    Returns the timeline rows it printed. Flows get the demo's settings as a parameter and the
    demo's clock as ``as_of``: nothing is passed through the environment.
    """
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_HOME,
        PREFECT_LOGGING_TO_API_ENABLED,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )
    from pydantic import SecretStr

    from retrain.local.stack import blob_server_url

    home = prepare_demo_home(base)
    token = secrets.token_urlsafe(16)
    settings = base.model_copy(
        update={
            "home": home,
            "alerts_token": SecretStr(token),
            "serve_port": free_port(),
            "alerts_port": free_port(),
            # Report links point where `retrain up` serves the registry's documents.
            "blob_base_url": blob_server_url(base),
        }
    )
    _quiet_libraries()
    prefect_settings = {
        PREFECT_HOME: str(home / "prefect"),  # what `retrain up` gives its Prefect server
        PREFECT_SERVER_ANALYTICS_ENABLED: False,
        PREFECT_LOGGING_TO_API_ENABLED: True,  # the runs keep their logs in the UI
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
        # Prefect's 20 s default is too short for a busy two-core machine (64 s was seen).
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 240,
    }
    with temporary_settings(updates=prefect_settings), _console_quiet():
        story = _Story(
            settings,
            rows=rows or (12_000 if fast else 24_000),
            epochs=epochs or (6 if fast else 10),
            token=token,
        )
        timeline = story.tell()
        _flush_run_logs()
    print_where_to_look(base, story.requests_sent, story.elapsed)
    return timeline


@contextlib.contextmanager
def _console_quiet() -> Iterator[None]:
    """Prefect's run logs go to its API (the UI shows them) but not to the terminal, where
    the story is told: its console handler shows warnings only while inside.

    Prefect sets its logging up again when the demo's own API server starts, from the
    environment, so the level is set there (``PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL``), not on
    a handler that is about to be replaced. Run logs themselves keep level INFO: a lower
    ``PREFECT_LOGGING_LEVEL`` would stop them before they reach the API.
    """
    import os

    from prefect.logging.configuration import setup_logging

    name = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"
    before = os.environ.get(name)
    os.environ[name] = "WARNING"
    setup_logging()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before
        setup_logging()


def _flush_run_logs() -> None:
    """Send the last run logs before the demo's Prefect server stops with the process."""
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()


def _quiet_libraries() -> None:
    """Library chatter (Lightning tips, deprecation notes) would bury the story."""
    import logging
    import warnings

    # Both set their own loggers to INFO when imported, so import them before quieting.
    import lightning.pytorch  # noqa: F401
    import mlflow  # noqa: F401

    for name in ("lightning", "lightning.pytorch", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*transfer_batch_to_device.*")


class _Story:
    """Five simulated weeks, one method per chapter; ``clock`` is the story's own time."""

    def __init__(self, settings: Settings, *, rows: int, epochs: int, token: str) -> None:
        from retrain.config.wiring import build_registry

        self.settings, self.rows, self.epochs, self.token = settings, rows, epochs, token
        home = settings.home
        self.data, self.window, self.recent = home / "data", home / "window", home / "recent"
        self.clock = DemoClock()
        self.timeline = Timeline()
        self.elapsed, self.requests_sent = 0.0, 0
        self.registry = build_registry(settings)

    def tell(self) -> list[dict[str, Any]]:
        """Register the pipeline, play the weeks, print the tables; the timeline rows."""
        from retrain.deployments import create_retrain_limits

        register_spec(self.registry, demo_spec(self.settings.home, self.epochs))
        create_retrain_limits([MODEL])  # the one-slot limit, as `retrain up` creates it
        console.rule(f"[bold]retrain demo[/] — pipeline {MODEL}, state in {self.settings.home}")
        first = self.week_1()
        services = DemoServices.start(self.registry, self.settings, self.clock, self.token)
        try:
            self.weeks_2_and_3(services)
            self.alert_storm(services, first)
            self.week_4()
            self.week_5(services)
        finally:
            services.stop()
        champion = self.registry.catalog.get_alias(MODEL, "champion")
        print_decisions(self.registry, MODEL)
        rows = self.timeline.rows
        console.print(render_table(f"What happened (champion now v{champion})", rows))
        self.elapsed = time.perf_counter() - self.timeline.started
        self.requests_sent = services.traffic.sent
        self.registry.close()
        return rows

    def week_data(self, week: int, scenario: str, *, into_window: bool = True) -> None:
        """Write week ``week``; the training window keeps two weeks, the recent one one."""
        self.clock.week = week
        path = write_week(self.data, week, scenario, self.rows)
        for folder, keep in ((self.window, 2 if into_window else 0), (self.recent, 1)):
            folder.mkdir(parents=True, exist_ok=True)
            if keep:
                shutil.copy(path, folder / path.name)
                for old in sorted(folder.glob("*.parquet"))[:-keep]:
                    old.unlink()

    def retrain(self, trigger: str, source: str | None = None) -> RetrainSummary:
        """One run of the retrain flow, at the story's time."""
        from flows.retrain_model import retrain_model

        return retrain_model(
            pipeline=MODEL,
            trigger=trigger,
            source=source,
            as_of=self.clock.now(),
            settings=self.settings,
        )

    def week_1(self) -> RetrainSummary:
        """The first model, judged on the floor alone, becomes champion."""
        t = time.perf_counter()
        self.week_data(1, "stable")
        with console.status("week 1: training the first model (v1)…"):
            first = self.retrain("bootstrap")
        self.timeline.add(
            1,
            "bootstrap: first model trained",
            f"v{first.candidate_version}",
            f"gate {first.gate}, {first.release}",
            t,
        )
        _say(f"v{first.candidate_version} is champion", first.duration_s)
        return first

    def weeks_2_and_3(self, services: DemoServices) -> None:
        """Applicants change (a downturn); the monitor notices in week 3."""
        from flows.monitor_drift import monitor_drift

        for week, scenario in ((2, "stable"), (3, "covariate_shift")):
            t = time.perf_counter()
            services.traffic.scenario = scenario
            self.week_data(week, scenario)
            found = monitor_drift(pipeline=MODEL, as_of=self.clock.now(), settings=self.settings)
            share = f"drift share {found.drifted_share or 0.0:.2f}"
            if found.drifted:
                what, verdict = "monitor: traffic drifted", f"{share}: ml.drift.detected"
            else:
                what, verdict = "monitor: recent traffic vs training data", f"{share}: no drift"
            self.timeline.add(week, what, "-", verdict, t)
        _say("drift detected in " + ", ".join(found.columns[:6]), None)

    def alert_storm(self, services: DemoServices, first: RetrainSummary) -> None:
        """The monitoring system's alert storm: 25 copies, one retrain."""
        t = time.perf_counter()
        url, launcher = services.receiver.url, services.launcher
        statuses = [post_alert(url, self.token, MODEL, i) for i in range(25)]
        wait_for_alert_run(launcher)
        result = next(iter(launcher.results.values()), None)
        if not isinstance(result, RetrainSummary):
            raise RuntimeError(f"the alert-triggered retrain failed: {result}")
        self.timeline.add(
            3,
            f"alert x25 → {len(launcher.runs)} retrain ({statuses.count(202)}× 202)",
            f"v{result.candidate_version} vs v{first.candidate_version}",
            f"gate {result.gate}, canary {result.release}",
            t,
        )
        _say(
            f"v{result.candidate_version}: gate {result.gate}, canary {result.release}",
            result.duration_s,
        )

    def week_4(self) -> None:
        """A poisoned batch (labels flipped) reaches the pipeline."""
        t = time.perf_counter()
        self.week_data(4, "label_noise", into_window=False)
        poisoned = self.retrain("schedule", source=str(self.data / "week-04.parquet"))
        self.timeline.add(
            4,
            "poisoned batch (label_noise)",
            f"v{poisoned.candidate_version}",
            f"gate {poisoned.gate}: " + "; ".join(poisoned.gate_reasons)[:70],
            t,
        )
        _say(f"v{poisoned.candidate_version} rejected at the gate", poisoned.duration_s)

    def week_5(self, services: DemoServices) -> None:
        """A candidate that passes the gate but fails in production."""
        from serving.faults import FaultSpec

        t = time.perf_counter()
        self.week_data(5, "covariate_shift")
        versions = self.registry.catalog.list_model_versions(MODEL)
        bad_version = max(v.version for v in versions) + 1
        services.faults.set(MODEL, bad_version, FaultSpec(error_rate=0.05, extra_latency_s=0.2))
        faulty = self.retrain("schedule")
        self.timeline.add(
            5,
            "candidate with 5% errors and +200 ms",
            f"v{faulty.candidate_version}",
            f"gate {faulty.gate}, canary {faulty.release}: " + faulty.release_reason.split(";")[0],
            t,
        )
        _say(f"v{faulty.candidate_version} canary {faulty.release}", faulty.duration_s)


def _say(headline: str, took: float | None) -> None:
    console.print(f"[green]✓[/] {headline}" + (f" [dim]({took} s)[/]" if took else ""))
