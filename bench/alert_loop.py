"""The alert loop with the real tools: Prometheus 2.x and Alertmanager 0.25 against the model
server (``retrain serve``) and the alert receiver, each its own process on loopback ports.

    python bench/alert_loop.py [--quick]

Set-up: a registry (SQLite + local blobs) in a temp home with three versions of ``loans`` (v3
answers 50% of its requests with a 5xx: ``--fault loans:3:errors=0.5``) and three registered
pipelines; the server follows the champion alias every 0.1 s (``--poll-interval 0.1``, as in
bench/serving.py); the receiver (the real app, retrains recorded: no Prefect here; rollbacks are the
production path, ``DirectRollbacks``); Prometheus scraping the server and the receiver every
1 s, evaluating every 1 s the rules ``retrain alerts rules`` writes for these specs, with the
error-ratio window 10 s and ``for: 0s`` (shipped: 1m and 1m, sized for a 15 s scrape); and
Alertmanager with the shipped routes (``infra/prometheus/alertmanager.yml``) whose webhook
points at this receiver, with ``group_by: ['...']``, ``group_wait: 0s`` and ``group_interval:
1s`` so every incident is its own group and goes out at once (clustering off).

1. Rollback alert -> 100% old version: an ``action: rollback`` alert posted to Alertmanager's
   ``POST /api/v2/alerts``, until every prediction the server answers comes from the previous
   champion (polled back to back), each started at a random moment of the server's poll
   cycle. Baseline, same run and server: ``tasks.release.rollback.rollback`` called directly
   (what ``retrain rollback`` runs) until the same.
2. The same alert twice, more than a cooldown apart: ``loans-drift`` has the shortest cooldown
   a spec allows (1 minute; the bench does the other parts meanwhile). Fired, resolved and
   fired again within the cooldown (folded), then again after it: two ``retrain.requested``
   events, one per incident. Baseline: the same notification posted to the receiver directly.
   (An incident whose previous group is still being flushed waits one ``group_interval``.)
3. Fault -> rollback through Prometheus: v3 (faulty) is made champion under 100 requests/s;
   timed (wall clock, as each part recorded it) from its first answer until the error-ratio
   rule fired (Prometheus ``activeAt``), the receiver stored Alertmanager's notification (the
   inbox row), moved the champion back (the ``model.rolled_back`` event), and the server
   answered only v1 again (the last request v3 answered or failed). Baseline: the direct
   rollback of (1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import yaml  # noqa: E402

MODEL, DRIFT, DIRECT = "loans", "loans-drift", "loans-direct"
TOKEN = "bench-token"
ROLLBACK_LABELS = {"alertname": "RetrainClientErrorRatioHigh", "action": "rollback"}
DRIFT_LABELS = {"alertname": "RetrainPredictionShift", "action": "retrain", "model": DRIFT}


# -- the receiver (child process) ----------------------------------------------------------------
class _RecordedRetrains:
    """Retrains recorded under their idempotency keys (no Prefect in this bench); no
    ``start_rollback``: rollbacks take the production path (``DirectRollbacks``)."""

    def __init__(self) -> None:
        self.runs: dict[str, str] = {}

    def start_retrain(self, model: str, *, idempotency_key: str, reason: str) -> str:
        return self.runs.setdefault(idempotency_key, f"bench-run-{len(self.runs) + 1}")

    def is_running(self, run_id: str) -> bool:
        return False


def _serve_receiver(home: str, port: int) -> None:
    import uvicorn

    from retrain.alerts.receiver import create_app
    from retrain.config.settings import Settings
    from retrain.config.wiring import build_registry

    registry = build_registry(Settings(home=Path(home)))
    app = create_app(registry, _RecordedRetrains(), token=TOKEN, models_ttl_s=0)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- processes -----------------------------------------------------------------------------------
class Stack:
    """The processes this bench started, each ended (by its own handle) on exit."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, args: list[str], ready: str, env: dict[str, str] | None = None
    ) -> None:
        log = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready, timeout=1).status_code == 200:
                    return
            if proc.poll() is not None:
                tail = (self.tmp / f"{name}.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"{name} exited during start-up:\n{tail}")
            time.sleep(0.1)
        raise SystemExit(f"{name} not ready at {ready} after 180 s")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _configs(tmp: Path, ports: dict[str, int]) -> None:
    """prometheus.yml, alertmanager.yml and the rules, from the shipped files and generator."""
    from retrain.alerts.prom_rules import RuleTiming, render_rules

    shipped = ROOT / "infra" / "prometheus"
    prom = yaml.safe_load((shipped / "prometheus.yml").read_text())
    prom["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    targets = {"retrain-model-server": ports["server"], "retrain-alert-receiver": ports["receiver"]}
    for job in prom["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{targets[job['job_name']]}"]}]
    am_target = [{"targets": [f"127.0.0.1:{ports['alertmanager']}"]}]
    prom["alerting"]["alertmanagers"][0]["static_configs"] = am_target
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(prom))
    timing = RuleTiming(error_window="10s", error_for="0s")
    (tmp / "retrain-rules.yml").write_text(render_rules(_specs(), timing))
    (tmp / "token").write_text(TOKEN)
    am = yaml.safe_load((shipped / "alertmanager.yml").read_text())
    am["route"] |= {"group_by": ["..."], "group_wait": "0s", "group_interval": "1s"}
    for route in am["route"]["routes"]:
        route["group_interval"] = "1s"
    for receiver in am["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"http://127.0.0.1:{ports['receiver']}/alerts/alertmanager"
            hook["http_config"]["authorization"]["credentials_file"] = str(tmp / "token")
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump(am))


def _specs() -> list[Any]:
    from retrain.config.specs import DEFAULT_SPECS_DIR, TriggerSpec, load_spec

    base = load_spec(DEFAULT_SPECS_DIR / "loan-default.yaml")
    quick = TriggerSpec(drift=True, cooldown_minutes=1)
    return [
        base.model_copy(update={"name": name, "triggers": quick}) for name in (MODEL, DRIFT, DIRECT)
    ]


@contextlib.contextmanager
def stack(tmp: Path) -> Iterator[dict[str, Any]]:
    """Registry, model server, receiver, Alertmanager and Prometheus, all ready."""
    from bench.serving import free_port
    from retrain.config.settings import Settings
    from retrain.config.spec_store import register_spec
    from retrain.config.wiring import build_registry
    from retrain.testing_serving import register_test_bundle

    home = tmp / "home"
    registry = build_registry(Settings(home=home))
    for spec in _specs():
        register_spec(registry, spec)
    register_test_bundle(registry, MODEL, seed=0, champion=True)
    register_test_bundle(registry, MODEL, seed=1, tag="v2 release")
    register_test_bundle(registry, MODEL, seed=2, tag="v3 faulty")
    ports = {name: free_port() for name in ("server", "receiver", "alertmanager", "prometheus")}
    _configs(tmp, ports)
    procs = Stack(tmp)
    env = {"RETRAIN_HOME": str(home)}
    code = "import sys; from retrain.cli import main; sys.argv[0] = 'retrain'; main()"
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    serve = ["serve", "--model", MODEL, "--port", str(ports["server"]), "--poll-interval", "0.1"]
    try:
        fault = ["--fault", f"{MODEL}:3:errors=0.5"]
        procs.start(
            "model-server",
            [sys.executable, "-c", code, *serve, *fault],
            f"{url['server']}/readyz",
            env,
        )
        receiver = [sys.executable, __file__, "--serve-receiver", str(home), str(ports["receiver"])]
        procs.start("receiver", receiver, f"{url['receiver']}/healthz", env)
        procs.start(
            "alertmanager",
            [
                "prometheus-alertmanager",
                f"--config.file={tmp / 'alertmanager.yml'}",
                f"--storage.path={tmp / 'am'}",
                "--cluster.listen-address=",
                f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
            ],
            f"{url['alertmanager']}/-/ready",
        )
        procs.start(
            "prometheus",
            [
                "prometheus",
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
            ],
            f"{url['prometheus']}/-/ready",
        )
        yield {"registry": registry, "urls": url, "tmp": tmp}
    finally:
        procs.stop()
        registry.close()


# -- sending alerts and watching the server ------------------------------------------------------
def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Incident:
    """One alert posted to Alertmanager's API (``POST /api/v2/alerts``): fired, resolved."""

    def __init__(self, am_url: str, labels: dict[str, str]) -> None:
        self.url, self.labels = f"{am_url}/api/v2/alerts", labels
        self.starts_at = _now_iso()

    def fire(self) -> float:
        """Post it firing, as a new incident (a new ``startsAt``); when it was posted."""
        self.starts_at = _now_iso()
        started = time.perf_counter()
        self._post({})
        return started

    def resolve(self) -> None:
        self._post({"endsAt": _now_iso()})

    def _post(self, extra: dict[str, str]) -> None:
        alert: dict[str, Any] = {"labels": self.labels, "annotations": {"summary": "bench"}}
        alert |= {"startsAt": self.starts_at, **extra}
        httpx.post(self.url, json=[alert], timeout=10).raise_for_status()


class Predictor:
    """Single-row predictions back to back: which version answers."""

    def __init__(self, url: str, row: dict[str, Any]) -> None:
        self.client = httpx.Client(base_url=url, timeout=10)
        self.body = {"instances": [row]}

    def version(self) -> int:
        answer = self.client.post(f"/v1/models/{MODEL}:predict", json=self.body)
        answer.raise_for_status()
        return int(answer.json()["model_version"])

    def served_only(self, version: int, *, tail_s: float = 0.3, timeout_s: float = 30.0) -> float:
        """When (perf_counter) the first request was sent after which every answer, for at
        least ``tail_s``, came from ``version``."""
        deadline = time.perf_counter() + timeout_s
        since: float | None = None
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            if self.version() != version:
                since = None
            elif since is None:
                since = sent
            elif time.perf_counter() - since >= tail_s:
                return since
        raise SystemExit(f"the server did not answer only v{version} within {timeout_s:g} s")


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """When (perf_counter) ``condition`` first held, polled every 10 ms."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if condition():
            return time.perf_counter()
        time.sleep(0.01)
    raise SystemExit(f"timed out after {timeout_s:g} s waiting for {what}")


def _promote(registry: Any, version: int) -> None:
    current = registry.catalog.get_alias(MODEL, "champion")
    registry.catalog.set_alias(
        MODEL, "champion", version, expected=current, reason="bench release", actor="bench"
    )


def _retrains(registry: Any, model: str) -> int:
    return len(registry.catalog.events(model, kinds=["retrain.requested"]))


def _decisions(registry: Any, model: str) -> list[str]:
    alerts = reversed(registry.catalog.recent_alerts(model=model, limit=100))
    return [a.state if a.state != "ignored" else f"ignored ({a.reason})" for a in alerts]


# -- 1. rollback alert -> 100% old version -------------------------------------------------------
def bench_rollback_alert(env: dict[str, Any], predictor: Predictor, repeats: int) -> dict[str, Any]:
    """Alternately: a rollback alert through Alertmanager, and a direct rollback call."""
    from tasks.release.rollback import rollback

    registry = env["registry"]
    took: dict[str, list[float]] = {"alert": [], "direct": []}
    phase = random.Random(7)
    for i in range(repeats):
        for path in ("alert", "direct"):
            _promote(registry, 2)
            predictor.served_only(2, tail_s=0.2)
            time.sleep(phase.uniform(0.0, 0.1))  # any moment of the server's 0.1 s poll cycle
            if path == "alert":
                labels = {**ROLLBACK_LABELS, "model": MODEL, "severity": "page", "n": str(i)}
                incident = Incident(env["urls"]["alertmanager"], labels)
                started = incident.fire()
            else:
                started = time.perf_counter()
                rollback(registry, MODEL, reason="bench: direct rollback", actor="bench")
            took[path].append(predictor.served_only(1) - started)
            if path == "alert":
                incident.resolve()
    return took


# -- 2. the same alert twice, more than a cooldown apart -----------------------------------------
def _alertmanager_body(model: str) -> bytes:
    """What Alertmanager would post for one firing drift alert of ``model``."""
    alert = {
        "status": "firing",
        "labels": {**DRIFT_LABELS, "model": model},
        "startsAt": _now_iso(),
        "fingerprint": f"direct-{time.time()}",
    }
    document = {"version": "4", "groupKey": "{}:{}", "status": "firing", "alerts": [alert]}
    return json.dumps(document).encode()


class Recurring:
    """``loans-drift``'s drift alert: incidents through Alertmanager, counted in the registry."""

    def __init__(self, env: dict[str, Any]) -> None:
        self.registry = env["registry"]
        self.env = env
        labels = {**DRIFT_LABELS, "severity": "warning"}
        self.incident = Incident(env["urls"]["alertmanager"], labels)
        self.first_at = 0.0
        self.latency: list[float] = []

    def start(self) -> None:
        """First incident: a retrain; resolved and fired again within the cooldown: folded."""
        started = self.incident.fire()
        done = _wait(lambda: _retrains(self.registry, DRIFT) == 1, 30, "the first retrain")
        self.first_at = done
        self.latency.append(done - started)
        self._resolve()
        self.incident.fire()
        _wait(lambda: "folded" in _decisions(self.registry, DRIFT), 30, "a folded alert")

    def finish(self) -> None:
        """After the cooldown (1 minute), the same alert again: a second retrain."""
        time.sleep(max(0.0, self.first_at + 61.0 - time.perf_counter()))
        self._resolve()
        started = self.incident.fire()
        done = _wait(lambda: _retrains(self.registry, DRIFT) == 2, 30, "the second retrain")
        self.latency.append(done - started)

    def _resolve(self) -> None:
        resolved = _decisions(self.registry, DRIFT).count("ignored (resolved)")
        self.incident.resolve()
        _wait(
            lambda: _decisions(self.registry, DRIFT).count("ignored (resolved)") > resolved,
            30,
            "the resolved notification",
        )

    def direct(self) -> float:
        """Baseline: the same notification posted straight to the receiver."""
        url = f"{self.env['urls']['receiver']}/alerts/alertmanager"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        started = time.perf_counter()
        httpx.post(url, content=_alertmanager_body(DIRECT), headers=headers).raise_for_status()
        return _wait(lambda: _retrains(self.registry, DIRECT) == 1, 30, "a retrain") - started


# -- 3. fault -> rollback through Prometheus -----------------------------------------------------
def _alert(prom_url: str) -> dict[str, Any] | None:
    """The error-ratio alert of ``loans`` as Prometheus holds it (state, ``activeAt``)."""
    alerts = httpx.get(f"{prom_url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    for alert in alerts:
        labels = alert["labels"]
        if labels.get("alertname") == ROLLBACK_LABELS["alertname"] and labels.get("model") == MODEL:
            found: dict[str, Any] = alert
            return found
    return None


def _stamps(env: dict[str, Any], alert: dict[str, Any]) -> dict[str, float]:
    """Wall-clock times of each stage, as each part recorded it: the rule evaluation that fired
    (Prometheus ``activeAt``; ``for: 0s``), the notification stored by the receiver (inbox),
    and the rollback (the registry event)."""
    catalog = env["registry"].catalog
    row = next(a for a in catalog.recent_alerts(model=MODEL, limit=20) if a.action == "rollback")
    event = catalog.events(MODEL, kinds=["model.rolled_back"])[-1]
    assert event.actor == "alert-receiver" and row.state == "rolled_back", (event, row)
    return {
        "firing": datetime.fromisoformat(alert["activeAt"]).timestamp(),
        "delivered": row.received_at.timestamp(),
        "rolled_back": event.created_at.timestamp(),
    }


def bench_fault(env: dict[str, Any], rows: Any, repeats: int) -> list[dict[str, float]]:
    """Faulty v3 promoted under load; stages timed from its first answer (wall clock)."""
    from bench.serving import Load

    registry, urls = env["registry"], env["urls"]
    runs = []
    for _ in range(repeats):
        load = Load(urls["server"], rows, seconds=300, rate=100.0)
        time.sleep(2.0)  # healthy traffic first: Prometheus has a baseline
        _promote(registry, 3)
        _wait(lambda: registry.catalog.get_alias(MODEL, "champion") == 1, 60, "the rollback")
        alert = _alert(urls["prometheus"])
        time.sleep(1.0)
        report = load.finish()
        # Not v1: answered by v3 or failed by it (a 5xx names no version).
        bad = [r for r in report.records if r.version != 1]
        if alert is None or not bad:
            raise SystemExit("the faulty version never answered, or no alert fired")
        wall = time.time() - time.perf_counter() + report.started_at  # the load's zero, wall
        exposed = wall + bad[0].sent_s
        stages = {k: v - exposed for k, v in _stamps(env, alert).items()}
        stages["only_v1"] = bad[-1].sent_s - bad[0].sent_s
        stages["errors"], stages["requests"] = float(report.server_errors), float(report.sent)
        runs.append(stages)
        _wait(lambda: _alert(urls["prometheus"]) is None, 90, "the alert to resolve")
    return runs


# -- the report ----------------------------------------------------------------------------------
def _ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:7.1f} ms  max {max(values) * 1000:7.1f} ms"


def _tools() -> str:
    def version(cmd: str) -> str:
        out = subprocess.run([cmd, "--version"], capture_output=True, text=True).stdout
        return out.split()[2] if out else "?"

    return f"Prometheus {version('prometheus')}, Alertmanager {version('prometheus-alertmanager')}"


def report(
    took: dict[str, list[float]],
    drift: Recurring,
    direct_s: float,
    decisions: list[str],
    faults: list[dict[str, float]],
    retrains: int,
) -> None:
    alert, direct = took["alert"], took["direct"]
    print(f"  rollback alert -> 100% old version   {_ms(alert)} over {len(alert)}")
    print(f"  direct rollback() -> 100% old        {_ms(direct)} over {len(direct)} (baseline)")
    ratio = statistics.median(alert) / statistics.median(direct)
    verdict = "meets" if max(alert) < 2.0 else "MISSES"
    print(f"    alert / direct median x{ratio:.1f}; target < 2 s end to end: {verdict}")
    print(
        f"  same alert twice, > cooldown (1 min) apart: {retrains} retrains started "
        f"(expected 2); decisions in order: {', '.join(decisions)}"
    )
    print(
        f"    alert -> retrain.requested via Alertmanager {_ms(drift.latency)}; "
        f"posted to the receiver directly {direct_s * 1000:.1f} ms (baseline): "
        f"x{statistics.median(drift.latency) / direct_s:.1f}"
    )
    for key, what in (
        ("firing", "rule firing"),
        ("delivered", "alert at receiver"),
        ("rolled_back", "champion back"),
        ("only_v1", "100% old version"),
    ):
        values = [run[key] for run in faults]
        print(f"  fault -> {what:17s} (via Prometheus) {_ms(values)} over {len(values)}")
    last = statistics.median([run["only_v1"] for run in faults])
    errors = statistics.median([run["errors"] for run in faults])
    print(
        f"    fault -> 100% old / direct rollback median x{last / statistics.median(direct):.0f}; "
        f"5xx answered per fault (v3 fails 50%, 100 requests/s): median {errors:.0f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, for CI")
    parser.add_argument(
        "--serve-receiver", nargs=2, metavar=("HOME", "PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.serve_receiver:
        _serve_receiver(args.serve_receiver[0], int(args.serve_receiver[1]))
        return
    from retrain.local.traffic import traffic_rows

    repeats, fault_repeats = (3, 2) if args.quick else (7, 4)
    started = time.perf_counter()
    rows = traffic_rows(2000, seed=11)
    with tempfile.TemporaryDirectory(prefix="bench-alert-loop-") as tmp, stack(Path(tmp)) as env:
        ready = time.perf_counter() - started
        drift = Recurring(env)
        drift.start()
        direct_s = drift.direct()
        predictor = Predictor(env["urls"]["server"], rows[0][0])
        took = bench_rollback_alert(env, predictor, repeats)
        faults = bench_fault(env, rows, fault_repeats)
        drift.finish()
        decisions = _decisions(env["registry"], DRIFT)
        retrains = _retrains(env["registry"], DRIFT)
    print(
        f"alert loop ({'quick' if args.quick else 'full'}): {_tools()}, model server, alert "
        f"receiver; each its own process (stack ready in {ready:.1f} s)"
    )
    report(took, drift, direct_s, decisions, faults, retrains)
    print(f"  ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
