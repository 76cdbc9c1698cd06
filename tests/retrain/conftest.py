"""Fixtures for the front-door tests: registered models and alert documents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from registry.schema import AlertRow
from registry.store import Registry
from retrain.alerts.launchers import RecordingLauncher
from retrain.alerts.receiver import create_app
from retrain.config.spec_store import register_spec
from retrain.config.specs import DEFAULT_SPECS_DIR, PipelineSpec, TriggerSpec, load_spec

TOKEN = "test-token"
SECRET = "hmac-secret"


def register_models(
    registry: Registry, names: list[str], *, cooldown_minutes: int = 60, drift: bool = True
) -> list[PipelineSpec]:
    """Register one copy of the default spec per name (a model added by spec alone)."""
    base = load_spec(DEFAULT_SPECS_DIR / "loan-default.yaml")
    specs = []
    for name in names:
        triggers = TriggerSpec(drift=drift, cooldown_minutes=cooldown_minutes)
        copy = base.model_copy(update={"name": name, "triggers": triggers})
        spec = PipelineSpec.model_validate(copy.model_dump())  # the name is checked too
        register_spec(registry, spec)
        specs.append(spec)
    return specs


def alertmanager_body(
    model: str,
    *,
    status: str = "firing",
    fingerprint: str = "f1",
    group: str = "g",
    starts_at: str = "2026-11-21T10:00:00Z",
) -> bytes:
    """An Alertmanager webhook (version 4) notification with one alert for ``model``, firing
    since ``starts_at`` (its incident)."""
    document: dict[str, Any] = {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="FeatureDrift", group="{group}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "retrain",
        "groupLabels": {"alertname": "FeatureDrift"},
        "commonLabels": {"alertname": "FeatureDrift", "severity": "warning"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "FeatureDrift", "model": model},
                "annotations": {"summary": f"drift on {model}"},
                "startsAt": starts_at,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": fingerprint,
            }
        ],
    }
    return json.dumps(document).encode()


def generic_body(model: str, *, key: str | None = None, status: str = "firing") -> bytes:
    """A generic alert for ``model``."""
    document: dict[str, Any] = {"model": model, "status": status, "reason": "drift share 0.4"}
    if key is not None:
        document["dedup_key"] = key
    return json.dumps(document).encode()


@contextmanager
def serve_receiver(registry: Registry, **options: Any) -> Iterator[httpx.Client]:
    """The alert receiver on a loopback port (uvicorn) for loan-default and churn, with its
    dispatcher stopped (rows stay as stored); the client sends the bearer token."""
    from serving.runner import start_server

    register_models(registry, ["loan-default", "churn"])
    app = create_app(registry, RecordingLauncher(), token=TOKEN, hmac_secret=SECRET, **options)
    with start_server(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        app.state.dispatcher.stop()
        http.headers["Authorization"] = f"Bearer {TOKEN}"
        yield http


def inbox_rows(registry: Registry) -> int:
    """Alerts in the inbox, whatever their state."""
    with registry.catalog.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(AlertRow)).scalar_one())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    """A registry on SQLite, or on a fresh PostgreSQL schema (marker ``postgres``)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    opened = Registry.open(url, (tmp_path / "blobs").as_uri())
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def kit() -> SimpleNamespace:
    """The builders above, for tests (test modules cannot import each other here)."""
    return SimpleNamespace(
        token=TOKEN,
        secret=SECRET,
        register_models=register_models,
        serve_receiver=serve_receiver,
        inbox_rows=inbox_rows,
        alertmanager_body=alertmanager_body,
        generic_body=generic_body,
    )
