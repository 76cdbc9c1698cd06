"""Fixtures every suite shares: isolated settings and a registry on embedded defaults."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests never talk to a Prefect server of the user's, and never pay for heartbeats.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_API_ENABLE_HTTP2", "false")
os.environ["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = ""
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from registry.store import Registry  # noqa: E402
from retrain.settings import Settings  # noqa: E402
from retrain.wiring import build_registry  # noqa: E402


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded-default settings rooted in a fresh temporary home."""
    return Settings(home=tmp_path / "home")


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    """A registry on SQLite and a local blob folder, closed after the test."""
    reg = build_registry(settings)
    try:
        yield reg
    finally:
        reg.close()
