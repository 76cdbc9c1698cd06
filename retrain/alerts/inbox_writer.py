"""The receiver's inbox writes, off its event loop and waited for no longer than a bound.

Writing on the event loop froze the whole receiver while the database was busy: an SQLite lock
held for 45 s by another process stalled ``/healthz`` too, and the alert got its 202 after 46 s
instead of a 503. Here every write runs on one daemon thread; the request waits for it at most
``timeout_s`` and then gets ``DatabaseUnavailableError`` (the receiver answers 503 with
``Retry-After``) while the loop keeps serving everything else.

One thread, not a pool: the catalog takes one writer at a time anyway, and while the database
is stuck only that thread waits on it. Requests that queue up behind a write are written
together in the next transaction (group commit), which keeps the hop to the thread from
costing CPU under load; a batch the database refuses is written again request by request, so
one sender's bad value never fails another's alerts. A write whose request gave up before it
started is dropped; one already running finishes or fails on its own (it is one transaction
under dedup keys, so the sender's retry finds it stored or finds nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from registry.errors import ConfigError, DatabaseUnavailableError

__all__ = ["InboxWriter"]

A = TypeVar("A")  # what a request asks to write
R = TypeVar("R")  # what the write gives back for each
# Requests written in one transaction at most: a batch stays a short transaction.
_MAX_BATCH = 64


class _Job(Generic[A, R]):
    """One request's items and the future its handler awaits on the event loop."""

    __slots__ = ("abandoned", "future", "items", "loop", "started")

    def __init__(self, loop: asyncio.AbstractEventLoop, items: list[A]) -> None:
        self.loop = loop
        self.future: asyncio.Future[list[R]] = loop.create_future()
        self.items = items
        self.started = False  # these two change under the writer's lock only
        self.abandoned = False

    def settle(self, result: list[R] | None, error: Exception | None) -> None:
        """Hand the outcome to the loop (from the writer thread)."""
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self.loop.call_soon_threadsafe(_settle, self.future, result, error)


def _settle(
    future: asyncio.Future[list[R]], result: list[R] | None, error: Exception | None
) -> None:
    if future.done():  # its request timed out meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result or [])


class InboxWriter(Generic[A, R]):
    """Writes batches with ``write`` (one result per item, in order) on one background thread;
    ``store`` waits at most ``timeout_s`` for its share."""

    def __init__(self, write: Callable[[Sequence[A]], list[R]], timeout_s: float) -> None:
        self._write = write
        self.timeout_s = timeout_s
        self.retry_after_s = max(1, math.ceil(timeout_s))
        self._jobs: queue.SimpleQueue[_Job[A, R] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def store(self, items: list[A]) -> list[R]:
        """``items`` written (with whatever else is queued); ``DatabaseUnavailableError`` once
        ``timeout_s`` has passed without the write being done."""
        job: _Job[A, R] = _Job(asyncio.get_running_loop(), items)
        self._ensure_started()
        self._jobs.put(job)
        deadline = asyncio.timeout(self.timeout_s)
        try:
            async with deadline:
                return await job.future
        except TimeoutError:
            if not deadline.expired():
                raise  # the write's own TimeoutError
            with self._lock:
                job.abandoned = not job.started  # not started: it never will be
            raise DatabaseUnavailableError(
                f"the registry database stayed busy for {self.timeout_s:g} s; "
                f"retry in {self.retry_after_s} s"
            ) from None

    def stop(self) -> None:
        """Let the thread end after the jobs queued so far (it is a daemon: a write stuck on
        a locked database does not hold the process up)."""
        with self._lock:
            if self._thread is not None:
                self._jobs.put(None)
                self._thread = None

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="alert-inbox", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            batch = [job]
            while len(batch) < _MAX_BATCH:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)  # stop after this batch
                    break
                batch.append(more)
            with self._lock:  # requests that already answered 503 are dropped, never written
                live = [job for job in batch if not job.abandoned]
                for job in live:
                    job.started = True
            if live:
                self._write_batch(live)
                # The loop has answers to send: let it take the GIL now, not after this
                # thread's next batch of Python (up to the 5 ms switch interval later).
                time.sleep(0)

    def _write_batch(self, batch: list[_Job[A, R]]) -> None:
        try:
            results = self._write([item for job in batch for item in job.items])
        except ConfigError as exc:
            if len(batch) == 1:
                batch[0].settle(None, exc)
                return
            for job in batch:  # whose value was refused? each alone, in its own transaction
                self._write_batch([job])
            return
        except Exception as exc:  # handed to every waiting request, which answers for it
            for job in batch:
                job.settle(None, exc)
            return
        start = 0
        for job in batch:
            job.settle(results[start : start + len(job.items)], None)
            start += len(job.items)
