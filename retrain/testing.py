"""Fakes shipped with the platform, for its own tests and for anyone testing code built on it.

As httpx ships ``MockTransport``, this module ships what makes release, serving and training
logic testable without servers, sleeps or wall-clock deadlines:

- ``ManualClock``: ``time()``, ``monotonic()`` and ``sleep(s)``, where sleeping advances the
  clock at once. Pass its methods wherever the platform takes ``clock``/``monotonic``/``sleep``
  (``run_canary``, ``AliasFollower``, ``serving.app.create_app``, ``AlertDispatcher``,
  ``acquire_release_lock``, ``ReleaseStateReader``).
- ``ScriptedMetricsSource``: a ``MetricsSource`` that plays back a prepared sequence of
  per-version counters, so canary windows are judged with no model server
  (``window_counters`` builds one window's counters, ``canary_script`` lays out a release).
- ``retrain.testing_blobs.InMemoryBlobStore``: the registry's blob store protocol in a dict.
- ``NullTracker``: a ``Tracker`` that talks to no server and keeps what it is told.
- ``retrain.testing_serving``: the model server app over in-process HTTP, its alias follower
  polled by hand on a manual clock, and small real bundles registered in seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tasks.release.metric_sources import MetricsSnapshot, VersionCounters

if TYPE_CHECKING:
    pass

__all__ = [
    "MANUAL_EPOCH",
    "ManualClock",
    "NullTracker",
    "Reading",
    "ScriptEntry",
    "ScriptExhaustedError",
    "ScriptedMetricsSource",
    "canary_script",
    "window_counters",
]

# 2026-01-01T00:00:00Z: a fixed wall-clock start, so runs on a manual clock are reproducible.
MANUAL_EPOCH = 1_767_225_600.0


# -- clocks --------------------------------------------------------------------------------------
class ManualClock:
    """A clock that moves only when told: ``sleep(s)`` (or ``advance(s)``) adds ``s`` at once.

    ``time()`` is wall-clock seconds from ``start`` (default ``MANUAL_EPOCH``); ``monotonic()``
    starts at ``monotonic_start`` (1,000 s, like a machine that has been up a while, so code
    that initialises "last time" to 0 behaves as it does in production). Both advance together.
    Every sleep is recorded in ``sleeps``. Safe to share between threads.
    """

    def __init__(self, start: float = MANUAL_EPOCH, *, monotonic_start: float = 1000.0) -> None:
        self._wall = float(start)
        self._mono = float(monotonic_start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def time(self) -> float:
        """Wall-clock seconds since the Unix epoch, as ``time.time()``."""
        with self._lock:
            return self._wall

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, as ``time.monotonic()``."""
        with self._lock:
            return self._mono

    def sleep(self, seconds: float) -> None:
        """Advance both clocks by ``seconds`` at once (recorded in ``sleeps``)."""
        if seconds < 0:
            raise ValueError(f"sleep length must be non-negative, got {seconds}")
        with self._lock:
            self.sleeps.append(seconds)
            self._wall += seconds
            self._mono += seconds

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass (the same as ``sleep``, read as the test's own action)."""
        self.sleep(seconds)

    def now(self) -> datetime:
        """``time()`` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.time(), UTC)


# -- scripted metrics ------------------------------------------------------------------------------
def window_counters(
    requests: int,
    *,
    latency_s: float = 0.004,
    prediction: float = 0.3,
    errors: int = 0,
    labels: int = 0,
    label_value: float = 0.0,
) -> VersionCounters:
    """Counters of one window of ``requests`` requests, exactly as the model server records
    them (through ``serving.stats``): latencies spread over ``latency_s`` .. 1.45x, predictions
    over ``prediction`` .. +0.06, the first ``errors`` requests failed, and ``labels`` delayed
    labels of value ``label_value`` scored against a prediction of ``prediction``."""
    from serving.stats import StatsBook

    book = StatsBook()
    series = book.series("scripted", 1, "canary")
    for i in range(requests):
        if i < errors:
            series.fail(latency_s)
        else:
            series.observe(latency_s * (1 + (i % 10) / 20), [prediction + (i % 7) / 100])
    for _ in range(labels):
        series.feedback([prediction], [label_value])
    return MetricsSnapshot.from_server_stats(book.snapshot("scripted")).get(1)


@dataclass(frozen=True)
class Reading:
    """One scripted snapshot: what each version did since the previous snapshot (``traffic``,
    added to the running totals), what the server says it routes (``routing``, None: a source
    that cannot tell) and the versions it failed to load."""

    traffic: Mapping[int, VersionCounters] = field(default_factory=dict)
    routing: Mapping[str, Any] | None = None
    load_errors: Mapping[int, str] = field(default_factory=dict)


# A reading, a bare ``{version: counters}`` (a reading with traffic only), or an exception
# instance to raise (``MetricsUnavailableError`` for an outage, ``KeyboardInterrupt`` for a kill).
ScriptEntry = Reading | Mapping[int, VersionCounters] | BaseException


class ScriptExhaustedError(AssertionError):
    """The code under test took more snapshots than the script holds."""


class ScriptedMetricsSource:
    """A ``MetricsSource`` that plays back ``script``, one entry per ``snapshot`` call.

    Counters are cumulative, as from a real source: each entry's traffic is added to the totals
    so far. Snapshots are stamped with ``clock`` (give it the clock the code under test measures
    windows with, e.g. ``ManualClock.monotonic``). Reading past the end raises
    ``ScriptExhaustedError``; ``remaining`` tells how much of the script was never read.
    """

    def __init__(
        self,
        script: Iterable[ScriptEntry],
        *,
        clock: Callable[[], float] = time.monotonic,
        model: str | None = None,
    ) -> None:
        self._script = list(script)
        self._clock = clock
        self._model = model
        self.totals: dict[int, VersionCounters] = {}
        self.calls = 0
        self.read_at: list[float] = []  # the clock at each snapshot, raised ones included

    @property
    def remaining(self) -> int:
        """Script entries not read yet."""
        return len(self._script) - self.calls

    def snapshot(self, model: str) -> MetricsSnapshot:
        """The next scripted snapshot of ``model`` (or the scripted exception, raised)."""
        if self._model is not None and model != self._model:
            raise AssertionError(f"scripted for model {self._model!r}, asked for {model!r}")
        if self.calls >= len(self._script):
            raise ScriptExhaustedError(
                f"snapshot #{self.calls + 1} of {model!r} asked for; "
                f"the script holds {len(self._script)}"
            )
        entry = self._script[self.calls]
        self.calls += 1
        now = self._clock()
        self.read_at.append(now)
        if isinstance(entry, BaseException):
            raise entry
        reading = entry if isinstance(entry, Reading) else Reading(traffic=entry)
        for version, counters in reading.traffic.items():
            self.totals[version] = self.totals.get(version, VersionCounters()) + counters
        return MetricsSnapshot(
            dict(self.totals),
            routing=None if reading.routing is None else dict(reading.routing),
            load_errors=dict(reading.load_errors),
            taken_at=now,
        )


def canary_script(
    steps: Sequence[ScriptEntry], *, watch: Sequence[ScriptEntry] = ()
) -> list[ScriptEntry]:
    """The snapshots ``run_canary`` takes when each step is judged in one window and the source
    does not report routing: the release's start, then per step a settle read (no traffic) and
    the step's window, then, if ``watch`` is given, the watch's start and its windows.

    A release that stops early leaves the rest unread (see ``ScriptedMetricsSource.remaining``).
    """
    script: list[ScriptEntry] = [Reading()]
    for window in steps:
        script += [Reading(), window]
    if watch:
        script += [Reading(), *watch]
    return script


# -- tracking ------------------------------------------------------------------------------------
class NullTracker:
    """A ``Tracker`` that talks to no server: every call succeeds and is kept in memory."""

    def __init__(self) -> None:
        self._run_id: str | None = None
        self.runs = 0
        self.run_name: str | None = None
        self.params: dict[str, Any] = {}
        self.tags: dict[str, str] = {}
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.texts: dict[str, str] = {}
        self.status: str | None = None

    @property
    def run_id(self) -> str | None:
        """``null-run-<n>`` once a run started, else None (as MLflow's)."""
        return self._run_id

    def start(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        self.runs += 1
        self._run_id = f"null-run-{self.runs}"
        self.run_name, self.params, self.tags = run_name, dict(params), dict(tags)
        self.metrics, self.texts, self.status = [], {}, None

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.metrics.append((step, {k: float(v) for k, v in metrics.items()}))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags.update(tags)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.texts[artifact_file] = text

    def finish(self, status: str = "FINISHED") -> None:
        self.status = status


if TYPE_CHECKING:  # the fakes satisfy the protocols they stand in for (checked by mypy)
    from tasks.release.metric_sources import MetricsSource
    from tasks.training.tracking import Tracker

    _tracker: Tracker = NullTracker()
    _source: MetricsSource = ScriptedMetricsSource([])
