"""``retrain demo``: weeks of production on embedded defaults, told as they happen.

v1 is bootstrapped as champion; traffic drifts; the monitor flags it and an Alertmanager-style
alert (sent 25 times) starts exactly one retrain; v2 passes the gate and is promoted through
the canary; a poisoned batch is rejected at the gate; a candidate that misbehaves in
production is rolled back by the canary analysis. Everything runs for real: Prefect flows,
Great Expectations, Evidently, Lightning, the registry, the model server and the webhook.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from typing import TYPE_CHECKING, Any

from retrain.cli.common import console, render_table
from retrain.demo_support import (
    BackgroundTraffic,
    ThreadLauncher,
    Timeline,
    free_port,
    post_alert,
    print_decisions,
    wait_for_alert_run,
    write_week,
)

if TYPE_CHECKING:
    from retrain.settings import Settings

__all__ = ["run_demo"]

MODEL = "loan-default"


def run_demo(
    base: Settings, *, fast: bool = False, rows: int | None = None, epochs: int | None = None
) -> list[dict[str, Any]]:
    """Run the story in ``base.home/demo`` (wiped first); Prefect runs land in ``home/prefect``.

    Returns the timeline rows it printed. The environment is restored afterwards.
    """
    home = (base.home / "demo").resolve()
    shutil.rmtree(home, ignore_errors=True)
    token = secrets.token_urlsafe(16)
    # Flows read Settings from the environment, as they do when a deployment starts them.
    updates = {
        "RETRAIN_HOME": str(home),
        "RETRAIN_ALERTS_TOKEN": token,
        "RETRAIN_SERVE_PORT": str(free_port()),
        "RETRAIN_ALERTS_PORT": str(free_port()),
        "PREFECT_HOME": str((base.home / "prefect").resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    saved = {k: os.environ.get(k) for k in updates}
    os.environ.update(updates)
    _quiet_libraries()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from retrain.settings import Settings

    try:
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            return _story(
                Settings(),
                rows=rows or (12_000 if fast else 24_000),
                epochs=epochs or (6 if fast else 10),
                token=token,
            )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


def _story(settings: Settings, *, rows: int, epochs: int, token: str) -> list[dict[str, Any]]:
    from flows.monitor import monitor_drift
    from flows.retrain import retrain_model
    from retrain.alerts import create_app as create_alert_app
    from retrain.deployments import create_retrain_limits
    from retrain.spec_store import register_spec
    from retrain.specs import default_spec_paths, load_spec
    from retrain.wiring import build_registry
    from serving.app import create_app
    from serving.faults import FaultInjector, FaultSpec
    from serving.runner import start_server
    from tasks.canary import CanaryPolicy
    from tasks.canary_analysis import CanaryLimits

    data, window, recent = (
        settings.home / "data",
        settings.home / "window",
        settings.home / "recent",
    )
    timeline = Timeline()
    registry = build_registry(settings)
    spec = load_spec(next(p for p in default_spec_paths() if p.stem == MODEL))
    # Short windows so the story fits in minutes; a retrain after drift legitimately moves
    # predictions, so the distribution check is looser than the default.
    demo_canary = CanaryPolicy(
        interval_s=2.0,
        min_requests=20,
        watch_windows=1,
        steps=[10.0, 25.0, 50.0, 100.0],
        limits=CanaryLimits(max_prediction_shift=0.4),
    )
    spec = spec.model_copy(
        update={
            "dataset": spec.dataset.model_copy(
                update={"source": str(window), "recent": str(recent)}
            ),
            "training": spec.training.model_copy(update={"max_epochs": epochs}),
            "canary": demo_canary,
        }
    )
    register_spec(registry, spec)
    create_retrain_limits([MODEL])  # the one-slot limit, as `retrain up` creates it
    console.rule(f"[bold]retrain demo[/] — pipeline {MODEL}, state in {settings.home}")

    def week_data(week: int, scenario: str, *, into_window: bool = True) -> None:
        path = write_week(data, week, scenario, rows)
        for folder, keep in ((window, 2 if into_window else 0), (recent, 1)):
            folder.mkdir(parents=True, exist_ok=True)
            if keep:
                shutil.copy(path, folder / path.name)
                for old in sorted(folder.glob("*.parquet"))[:-keep]:
                    old.unlink()

    # Week 1: the first model, judged on the floor alone, becomes champion.
    t = time.perf_counter()
    week_data(1, "stable")
    with console.status("week 1: training the first model (v1)…"):
        first = retrain_model(pipeline=MODEL, trigger="bootstrap")
    timeline.add(
        1,
        "bootstrap: first model trained",
        f"v{first['candidate_version']}",
        f"gate {first['gate']}, {first['release']}",
        t,
    )
    _say(f"v{first['candidate_version']} is champion", first)

    faults = FaultInjector()
    server = start_server(
        create_app(registry, [MODEL], poll_interval_s=0.2, faults=faults), port=settings.serve_port
    )
    alerts = ThreadLauncher()
    receiver = start_server(
        create_alert_app(registry, alerts, token=token), port=settings.alerts_port
    )
    traffic = BackgroundTraffic(server.url, MODEL, rate=150.0)
    traffic.start()
    console.print(f"model server {server.url}, alert receiver {receiver.url}, traffic 150 req/s")
    try:
        # Weeks 2-3: applicants change (a downturn); the monitor notices.
        t = time.perf_counter()
        week_data(2, "stable")
        quiet = monitor_drift(pipeline=MODEL)
        timeline.add(
            2,
            "monitor: recent traffic vs training data",
            "-",
            f"drift share {quiet['drifted_share']:.2f}: no drift",
            t,
        )
        t = time.perf_counter()
        traffic.scenario = "covariate_shift"
        week_data(3, "covariate_shift")
        drift = monitor_drift(pipeline=MODEL)
        timeline.add(
            3,
            "monitor: traffic drifted",
            "-",
            f"drift share {drift['drifted_share']:.2f}: ml.drift.detected",
            t,
        )
        _say("drift detected in " + ", ".join(drift["columns"][:6]), drift)

        # The monitoring system's alert storm: 25 copies, one retrain.
        t = time.perf_counter()
        statuses = [post_alert(receiver.url, token, MODEL, i) for i in range(25)]
        wait_for_alert_run(alerts)
        result = next(iter(alerts.results.values()), None)
        if isinstance(result, Exception) or result is None:
            raise RuntimeError(f"the alert-triggered retrain failed: {result}")
        timeline.add(
            3,
            f"alert x25 → {len(alerts.runs)} retrain ({statuses.count(202)}× 202)",
            f"v{result['candidate_version']} vs v{first['candidate_version']}",
            f"gate {result['gate']}, canary {result['release']}",
            t,
        )
        _say(
            f"v{result['candidate_version']}: gate {result['gate']}, canary {result['release']}",
            result,
        )

        # Week 4: a poisoned batch (labels flipped) reaches the pipeline.
        t = time.perf_counter()
        week_data(4, "label_noise", into_window=False)
        poisoned = retrain_model(
            pipeline=MODEL, trigger="schedule", source=str(data / "week-04.parquet")
        )
        timeline.add(
            4,
            "poisoned batch (label_noise)",
            f"v{poisoned['candidate_version']}",
            f"gate {poisoned['gate']}: " + "; ".join(poisoned["gate_reasons"])[:70],
            t,
        )
        _say(f"v{poisoned['candidate_version']} rejected at the gate", poisoned)

        # Week 5: a candidate that passes the gate but fails in production.
        t = time.perf_counter()
        week_data(5, "covariate_shift")
        bad_version = max(v.version for v in registry.catalog.list_model_versions(MODEL)) + 1
        faults.set(MODEL, bad_version, FaultSpec(error_rate=0.05, extra_latency_s=0.2))
        faulty = retrain_model(pipeline=MODEL, trigger="schedule")
        timeline.add(
            5,
            "candidate with 5% errors and +200 ms",
            f"v{faulty['candidate_version']}",
            f"gate {faulty['gate']}, canary {faulty['release']}: "
            + faulty["release_reason"].split(";")[0],
            t,
        )
        _say(f"v{faulty['candidate_version']} canary {faulty['release']}", faulty)
    finally:
        traffic.stop()
        receiver.stop()
        server.stop()
    champion = registry.catalog.get_alias(MODEL, "champion")
    print_decisions(registry, MODEL)
    console.print(render_table(f"What happened (champion now v{champion})", timeline.rows))
    _where_to_look(settings, traffic.sent, time.perf_counter() - timeline.started)
    registry.close()
    return timeline.rows


def _say(headline: str, detail: dict[str, Any]) -> None:
    took = detail.get("duration_s")
    console.print(f"[green]✓[/] {headline}" + (f" [dim]({took} s)[/]" if took else ""))


def _where_to_look(settings: Settings, sent: int, elapsed: float) -> None:
    home = settings.home
    console.print(f"\n{sent} requests served; demo took {elapsed:.0f} s. Where to look:")
    console.print(f"  • registry history:  RETRAIN_HOME={home} retrain models history {MODEL}")
    console.print(f"  • reports and cards: RETRAIN_HOME={home} retrain registry ls")
    console.print("  • Prefect UI (runs, artifacts): retrain up, then http://127.0.0.1:4200")
    console.print(f"  • MLflow UI: retrain up --mlflow-ui (experiments in {home / 'mlflow.db'})")
