"""``measure(stage)`` says what a stage cost: its CPU time (threads included) and its peak
resident memory, and a run's stages read back as the same table."""

from __future__ import annotations

import threading
import time

import numpy as np

from tasks.pipeline.resources import RunCosts, measure


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    total = 0
    while time.thread_time() < end:
        total += 1


def test_a_cpu_bound_stage_costs_its_cpu_seconds_threads_included() -> None:
    with measure("train") as cost:
        helper = threading.Thread(target=_spin, args=(0.3,))
        helper.start()
        _spin(0.3)
        helper.join()
    assert 0.55 <= cost.cpu_s <= 0.9, cost
    assert cost.wall_s >= 0.3 and cost.gpu_s == 0.0  # no CUDA here: no GPU time


def test_a_200_mb_allocation_shows_in_the_peak_not_after() -> None:
    with measure("drift") as quiet:
        pass
    with measure("gate") as cost:
        block = np.ones(200 * 1024 * 1024 // 8)  # touched: 200 MB resident
        del block
    assert cost.peak_rss_mb - quiet.peak_rss_mb >= 180, (cost, quiet)
    with measure("canary") as after:
        pass
    assert after.peak_rss_mb < cost.peak_rss_mb - 150, (after, cost)  # the peak was reset


def test_run_costs_read_back_and_render_as_one_table() -> None:
    costs = RunCosts()
    for stage in ("validate", "train"):
        with costs.measure(stage):
            _spin(0.05)
    stored = costs.to_dict()
    assert list(stored) == ["validate", "train"]
    assert RunCosts.from_dict(stored).to_dict() == stored
    assert set(costs.metrics()) >= {"cost.train.cpu_s", "cost.validate.peak_rss_mb"}
    table = costs.markdown().splitlines()
    assert table[0] == "| stage | wall s | CPU s | peak RSS MB | GPU s | GPU peak MB |"
    assert [row.split(" | ")[0] for row in table[2:]] == ["| validate", "| train", "| total"]
