"""Fixtures for the registry suites: both catalog databases, and workers that start together."""

from __future__ import annotations

import importlib.util
import multiprocessing
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.store import Registry

WORKERS = Path(__file__).with_name("registry_workers.py")
RunTogether = Callable[[list[list[str]]], list[dict[str, Any]]]


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh catalog database: SQLite in a temp folder, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def blob_url(tmp_path: Path) -> str:
    """A local blob folder (made on first write)."""
    return (tmp_path / "blobs").as_uri()


@pytest.fixture
def reg(database_url: str, blob_url: str) -> Iterator[Registry]:
    """A registry on each catalog database with local blobs."""
    opened = Registry.open(database_url, blob_url)
    try:
        yield opened
    finally:
        opened.close()


def _load_workers() -> Any:
    spec = importlib.util.spec_from_file_location("registry_workers", WORKERS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child(job: list[str], queue: Any, index: int) -> None:
    try:
        result = _load_workers().JOBS[job[0]](job[1:])
        queue.put((index, result, None))
    except BaseException as exc:  # reported to the parent, which fails the test
        queue.put((index, None, f"{type(exc).__name__}: {exc}"))


@pytest.fixture
def run_together(tmp_path: Path) -> RunTogether:
    """Run worker jobs in forked processes released at the same instant; their results.

    Forked (not spawned) so that eight workers do not each pay for importing SQLAlchemy on a
    small machine; each opens its own registry after the fork.
    """
    context = multiprocessing.get_context("fork")

    def run(jobs: list[list[str]]) -> list[dict[str, Any]]:
        gate = tmp_path / f"gate-{time.monotonic_ns()}"
        gate.mkdir()
        go = gate / "go"
        queue = context.Queue()
        procs = []
        for index, job in enumerate(jobs):
            full = [*job, str(gate / f"ready-{index}"), str(go)]
            proc = context.Process(target=_child, args=(full, queue, index))
            proc.start()
            procs.append(proc)
        deadline = time.monotonic() + 120
        while len(list(gate.glob("ready-*"))) < len(jobs):
            if any(p.exitcode not in (None, 0) for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        go.touch()
        results: dict[int, dict[str, Any]] = {}
        failures = []
        for _ in jobs:
            index, result, error = queue.get(timeout=300)
            if error is not None:
                failures.append(error)
            else:
                results[index] = result
        for proc in procs:
            proc.join(timeout=60)
        assert failures == [], failures
        return [results[i] for i in range(len(jobs))]

    return run
