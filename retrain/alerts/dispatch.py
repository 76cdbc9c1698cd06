"""From stored alerts to retrain runs (one per model per cooldown, storms folded into it) and
rollbacks (at once, one per incident: ``retrain.alerts.rollbacks``).

The receiver stores each alert in the registry inbox (state ``received``) and hands it here; a
single background thread decides, so decisions for one model never race inside a process:

- ``resolved`` alerts, alerts for models with no registered pipeline and models whose spec
  turns drift triggers off are marked ``ignored``, with the reason (``resolved``, ``unknown
  model``, ``triggers off``); an unknown model is logged once per model per hour;
- a firing alert for a model whose retrain started less than ``cooldown_minutes`` ago (or is
  still running) is marked ``folded`` with that run's id;
- otherwise a retrain starts through the launcher with the idempotency key
  ``retrain-<model>-<cooldown window>``, the alert is marked ``submitted`` and the registry
  event ``retrain.requested`` records the run. The same key from a retry, a sweep after a
  crash or a second receiver returns the same Prefect flow run instead of a new one.

An alert that asks for ``rollback`` is decided at once, never folded: ``rolled_back`` (the
champion moved back, ``model.rolled_back`` in the event log with actor ``alert-receiver``),
``duplicate`` (its incident was rolled back already) or ``ignored`` (nothing to roll back to,
or the champion changed after the incident started); a resolved one, or one for an unknown
model, is ignored like any alert. ``decisions`` counts decisions per (action, state) for the
receiver's ``/metrics``.

A launch that fails (Prefect unreachable) leaves the alert ``received``; the sweeper offers
``received`` rows again, which is also how rows left behind by a crash are picked up. The
sweeper also prunes decided alerts older than ``retention_days`` (at most once an hour);
``received`` rows are never pruned.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from registry.errors import LaunchError, RetrainError
from retrain.alerts.housekeeping import InboxPruner, UnknownModelLog
from retrain.alerts.launchers import RetrainLauncher, RollbackLauncher
from retrain.alerts.rollbacks import DirectRollbacks, RollbackDecider
from tasks.pipeline.trigger import (
    RETRAIN_REQUESTED,
    LastRetrain,
    TriggerDecision,
    decide,
    last_retrain,
    record_trigger,
)

if TYPE_CHECKING:
    from registry.records import AlertRecord
    from registry.store import Registry
    from retrain.config.spec_store import PipelineSummary

__all__ = ["AlertDispatcher"]

log = logging.getLogger(__name__)
# A storm after the cooldown, while a long retrain still runs, asks Prefect once per few seconds.
_RUNNING_CACHE_S = 5.0
# While requests are being acknowledged, deferred state writes trickle at this pace.
_BUSY_WRITE_GAP_S = 0.1
_BUSY_BATCH_S = 0.02
# Decisions recorded as they are taken (the others wait in the deferred marks).
_WRITTEN = ("received", "submitted", "rolled_back", "duplicate")


class AlertDispatcher:
    """Decides what each stored alert starts, on one background thread.

    ``clock`` is the wall time trigger decisions, the unknown-model log and pruning use;
    ``monotonic`` paces the sweeps and the deferred writes. Tests pass a manual clock and
    decide with ``run_pending`` (no thread). ``retention_days``: how long decided alerts stay.
    """

    def __init__(
        self,
        registry: Registry,
        launcher: RetrainLauncher,
        models: Callable[[], Mapping[str, PipelineSummary]],
        *,
        sweep_interval_s: float = 30.0,
        retry_after_s: float = 15.0,
        retention_days: float = 30.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        is_busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self._registry = registry
        # Shared with the receiver: one writer at a time in this process, so SQLite never
        # makes a request wait in its coarse busy-retry sleeps.
        self.write_lock = threading.Lock()
        self._launcher = launcher
        rollbacks = launcher if isinstance(launcher, RollbackLauncher) else None
        self._rollbacks = RollbackDecider(registry, rollbacks or DirectRollbacks(registry))
        self.decisions: Counter[tuple[str, str]] = Counter()  # (action, state): how many
        self._models = models
        self._sweep_interval_s = sweep_interval_s
        self._retry_after_s = retry_after_s
        self._pruner = InboxPruner(registry, retention_days=retention_days, clock=clock)
        self._unknown = UnknownModelLog(log, clock=clock)
        self._clock = clock
        self._monotonic = monotonic
        self._is_busy = is_busy
        self._queue: queue.Queue[AlertRecord | None] = queue.Queue()
        self._queued: set[int] = set()  # queued, or decided with the state not yet written
        self._marks: deque[tuple[int, str, str | None, str | None]] = deque()
        self._lock = threading.Lock()
        self._last_run: dict[str, LastRetrain | None] = {}
        self._launch_paused_until = 0.0  # after a failed launch, Prefect gets a moment
        self._running: dict[str, tuple[float, bool]] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._last_busy_write = 0.0

    @property
    def backlog(self) -> int:
        """Alerts queued for a decision, or decided with the decision not yet written."""
        with self._lock:
            return len(self._queued)

    def submit(self, alert: AlertRecord) -> None:
        """Queue a stored alert for a decision (no-op if it is already queued)."""
        with self._lock:
            if alert.id in self._queued:
                return
            self._queued.add(alert.id)
        self._queue.put(alert)

    def sweep(self, *, older_than_s: float = 0.0) -> int:
        """Queue inbox rows still ``received`` (left by a crash or a failed launch), after
        pruning old decided alerts if an hour has passed since the last prune."""
        if self._pruner.due():
            self.prune()
        pending = self._registry.catalog.pending_alerts(older_than_s=older_than_s)
        for alert in pending:
            self.submit(alert)
        return len(pending)

    def prune(self) -> int:
        """Delete decided alerts older than ``retention_days`` (never ``received`` ones)."""
        with self.write_lock:
            return self._pruner.prune()

    def start(self) -> None:
        """Start the decision thread; rows left ``received`` by an earlier process go first."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self.sweep()
        self._thread = threading.Thread(target=self._run, name="alert-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Write the decisions taken and stop; undecided alerts stay ``received``."""
        if self._thread is None:
            return
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout_s)
        self._thread = None
        self._write_marks(force=True)

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued alert is decided and recorded; False on timeout.

        This waits for the background thread, so it runs on real time whatever ``monotonic``
        is; without the thread, ``run_pending`` decides on the caller's thread instead."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._queued:
                    return True
            time.sleep(0.005)
        return False

    def run_pending(self) -> int:
        """Decide every queued alert on the calling thread and record the decisions; how many
        were decided. What the background thread does, minus the thread and its waits: for
        tests on a manual clock and one-shot tools; refused while the thread runs."""
        if self._thread is not None:
            raise RuntimeError("the dispatcher thread is running; wait with drain() instead")
        decided = 0
        while True:
            try:
                alert = self._queue.get_nowait()
            except queue.Empty:
                break
            if alert is not None:
                self._decide_queued(alert)
                decided += 1
        self._write_marks(force=True)
        return decided

    def _run(self) -> None:
        warm = getattr(self._launcher, "warm", None)
        if callable(warm):
            warm()
        next_sweep = self._monotonic() + self._sweep_interval_s
        while not self._stopping.is_set():
            wait = 0.005 if self._marks else max(0.05, next_sweep - self._monotonic())
            try:
                batch = [self._queue.get(timeout=wait)]
            except queue.Empty:
                batch = []
            while True:  # everything already queued: one wake-up per batch, not per alert
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for alert in batch:
                if alert is not None:
                    self._decide_queued(alert)
            self._write_marks(force=False)
            if self._is_busy():
                # While alerts pour in, let them gather: fewer thread switches stealing time
                # from acknowledgements. A quiet receiver's first alert is decided at once.
                self._stopping.wait(_BUSY_BATCH_S)
            if self._monotonic() >= next_sweep and not self._stopping.is_set():
                next_sweep = self._monotonic() + self._sweep_interval_s
                try:
                    self.sweep(older_than_s=self._sweep_interval_s)
                except RetrainError:
                    log.exception("sweeping the alert inbox failed")

    def _decide_queued(self, alert: AlertRecord) -> None:
        try:
            state = self.decide(alert, defer=True)
        except Exception:
            log.exception("alert %s: decision failed; it will be retried", alert.id)
            state = "received"
        if state in _WRITTEN:  # nothing left to write for this alert
            with self._lock:
                self._queued.discard(alert.id)

    def _write_marks(self, *, force: bool) -> None:
        """Record deferred fold/ignore decisions, yielding to requests being acknowledged.

        Folding a storm writes one row per alert; doing that while the receiver is busy would
        slow the acknowledgements it competes with, so while busy only one is written per
        ``_BUSY_WRITE_GAP_S``; the rest wait (in memory, and as ``received`` rows on disk,
        which a restart decides again the same way)."""
        while self._marks:
            if not force and self._is_busy():
                if self._monotonic() - self._last_busy_write < _BUSY_WRITE_GAP_S:
                    return
                self._last_busy_write = self._monotonic()
            alert_id, state, run_id, reason = self._marks.popleft()
            try:
                with self.write_lock:
                    self._registry.catalog.mark_alert(
                        alert_id, state, flow_run_id=run_id, reason=reason
                    )
            except RetrainError:
                log.exception(
                    "alert %s: could not record %s; it will be decided again", alert_id, state
                )
            with self._lock:
                self._queued.discard(alert_id)
            time.sleep(0)  # let the event loop take the GIL between writes

    def decide(self, alert: AlertRecord, *, defer: bool = False) -> str:
        """Decide one alert and record the outcome (folds/ignores later if ``defer``).

        A retrain's decision is the one every route into a retrain takes
        (``tasks.pipeline.trigger``); the last retrain is cached per model, so a storm reads
        the event log once. A rollback is decided and done at once (``RollbackDecider``).
        """
        state = self._decide(alert, defer)
        if state != "received":
            self.decisions[(alert.action, state)] += 1
        return state

    def _decide(self, alert: AlertRecord, defer: bool) -> str:
        summary = self._models().get(alert.model)
        if summary is None:
            self._unknown.warn(alert)
            return self._mark(alert.id, "ignored", None, defer, "unknown model")
        if alert.status != "firing":
            return self._mark(alert.id, "ignored", None, defer, alert.status)
        if alert.action == "rollback":
            return self._roll_back(alert, defer)
        if summary.paused:  # `retrain pipelines pause`: no retrain starts until it is resumed
            return self._mark(alert.id, "ignored", None, defer, "paused")
        if not summary.drift_trigger:
            return self._mark(alert.id, "ignored", None, defer, "triggers off")
        model, now = alert.model, self._clock()
        if self._launch_paused_until > now:
            return "received"  # Prefect was unreachable a moment ago; the sweeper retries
        when = datetime.fromtimestamp(now, UTC)
        verdict = self._verdict(self._last_run.get(model), summary.cooldown_minutes, when)
        if verdict.start:  # another receiver or a run may have started one since we looked
            self._last_run[model] = last_retrain(self._registry, model)
            verdict = self._verdict(self._last_run[model], summary.cooldown_minutes, when)
        if not verdict.start:
            return self._mark(alert.id, "folded", verdict.folded_into, defer, verdict.reason)
        # The window on the decision clock (a simulation's, or now), not the database's time.
        window = int(now // (summary.cooldown_minutes * 60.0))
        key = f"retrain-{model}-{window}"
        try:
            run_id = self._launcher.start_retrain(
                model, idempotency_key=key, reason=f"{alert.source} alert {alert.id}"
            )
        except LaunchError:
            self._launch_paused_until = now + self._retry_after_s
            log.warning("alert %s: retrain of %s not started; will retry", alert.id, model)
            return "received"
        self._last_run[model] = LastRetrain(when, run_id, "alert")
        with self.write_lock:
            self._registry.catalog.mark_alert(
                alert.id, "submitted", flow_run_id=run_id, reason=verdict.reason
            )
            record_trigger(
                self._registry,
                RETRAIN_REQUESTED,
                model,
                "alert",
                now=when,
                run_id=run_id,
                reason=f"{alert.source} alert",
                actor="alert-receiver",
                extra={"alert_id": alert.id, "idempotency_key": key},
            )
        return "submitted"

    def _roll_back(self, alert: AlertRecord, defer: bool) -> str:
        """A rollback alert decided and done now; a rollback (or a duplicate) is recorded at
        once, never deferred: that record keeps a redelivery from rolling back twice."""
        try:
            with self.write_lock:
                state, reason = self._rollbacks.decide(alert)
                if state != "ignored":
                    self._registry.catalog.mark_alert(alert.id, state, reason=reason)
        except LaunchError:
            log.warning("alert %s: rollback of %s not done; will retry", alert.id, alert.model)
            return "received"
        if state == "ignored":
            return self._mark(alert.id, state, None, defer, reason)
        return state

    def _verdict(
        self, last: LastRetrain | None, cooldown_minutes: float, now: datetime
    ) -> TriggerDecision:
        return decide(
            last,
            "alert",
            cooldown_minutes=cooldown_minutes,
            now=now,
            is_running=self._is_running,
        )

    def _mark(self, alert_id: int, state: str, run_id: str | None, defer: bool, reason: str) -> str:
        if defer:
            self._marks.append((alert_id, state, run_id, reason))
        else:
            with self.write_lock:
                self._registry.catalog.mark_alert(
                    alert_id, state, flow_run_id=run_id, reason=reason
                )
        return state

    def _is_running(self, run_id: str) -> bool:
        """Whether run ``run_id`` is still going (asked at most every few seconds)."""
        now = self._clock()
        checked = self._running.get(run_id)
        if checked is None or now - checked[0] > _RUNNING_CACHE_S:
            checked = (now, self._launcher.is_running(run_id))
            self._running[run_id] = checked
        return checked[1]
