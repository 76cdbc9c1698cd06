"""Row groups read and encoded ahead on worker threads, in the order a plain loop gives."""

from __future__ import annotations

import threading
import time

import pytest

from models.stream_encode import ordered_read_ahead


def test_results_come_in_the_order_of_the_items_whatever_finishes_first() -> None:
    def slow_for_small(n: int) -> int:
        time.sleep(0.002 * (10 - n % 10))  # early items finish last
        return n * n

    assert list(ordered_read_ahead(slow_for_small, range(40), workers=4)) == [
        n * n for n in range(40)
    ]
    assert list(ordered_read_ahead(slow_for_small, range(12), workers=0)) == [
        n * n for n in range(12)
    ]


def test_it_reads_at_most_workers_plus_one_ahead_and_stops_with_the_consumer() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def record(n: int) -> int:
        with lock:
            started.append(n)
        return n

    results = ordered_read_ahead(record, range(1000), workers=2)
    assert next(results) == 0
    time.sleep(0.05)
    assert len(started) <= 4  # the one handed out, and at most workers + 1 pending
    results.close()  # the consumer stops: nothing more is read
    time.sleep(0.05)
    assert len(started) <= 4


def test_an_error_in_a_worker_reaches_the_consumer() -> None:
    def fail_on_three(n: int) -> int:
        if n == 3:
            raise ValueError("row group 3 is corrupt")
        return n

    results = ordered_read_ahead(fail_on_three, range(10), workers=2)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="row group 3 is corrupt"):
        next(results)
