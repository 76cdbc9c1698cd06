"""Canary analysis degrades, never crashes: a failed scrape or a server restart between two
snapshots makes the window inconclusive, with the reason, and the release goes on."""

from __future__ import annotations

from tasks.release.analysis import CanaryLimits, analyse_window
from tasks.release.metric_sources import VersionCounters

EDGES = (0.01, 0.05, 0.1, float("inf"))


def _counters(
    requests: int, latency: tuple[int, ...], predictions: tuple[int, ...]
) -> VersionCounters:
    return VersionCounters(
        requests=requests,
        errors=0,
        latency_edges=EDGES,
        latency_counts=latency,
        prediction_counts=predictions,
    )


def test_a_series_missing_from_one_snapshot_makes_the_window_inconclusive() -> None:
    before = _counters(100, (90, 10, 0, 0), ())  # the prediction histogram was not scraped
    after = _counters(400, (350, 40, 10, 0), (100, 200, 100))
    window = after - before
    assert window.incomplete is not None and "missing" in window.incomplete
    healthy = _counters(300, (260, 30, 10, 0), (75, 150, 75))
    verdict = analyse_window(window, healthy, CanaryLimits(), min_requests=50)
    assert verdict.verdict == "inconclusive"
    assert [c.name for c in verdict.checks] == ["metrics"]
    assert "failed scrape" in verdict.checks[0].detail


def test_histograms_of_different_layouts_are_not_zipped() -> None:
    before = _counters(100, (90, 10, 0), (50, 50))
    after = _counters(400, (350, 40, 10, 0), (100, 200, 100))
    window = after - before  # used to raise ValueError from zip(strict=True)
    assert window.incomplete is not None
    assert window.requests == 300


def test_a_server_restart_between_snapshots_is_reported_not_read_as_no_traffic() -> None:
    before = _counters(5000, (4000, 900, 100, 0), (1000, 3000, 1000))
    after = _counters(40, (30, 10, 0, 0), (10, 20, 10))  # counters reset by a restart
    window = after - before
    assert window.incomplete is not None and "restart" in window.incomplete
    verdict = analyse_window(window, window, CanaryLimits(), min_requests=10)
    assert verdict.verdict == "inconclusive"


def test_complete_windows_are_judged_as_before() -> None:
    before = _counters(100, (90, 10, 0, 0), (25, 50, 25))
    after = _counters(400, (350, 40, 10, 0), (100, 200, 100))
    window = after - before
    assert window.incomplete is None
    verdict = analyse_window(window, window, CanaryLimits(), min_requests=50)
    assert verdict.verdict == "success"
