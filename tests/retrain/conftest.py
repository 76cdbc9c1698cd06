"""Fixtures for the front-door tests: registered models and alert documents."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from registry.store import Registry
from retrain.config.spec_store import register_spec
from retrain.config.specs import DEFAULT_SPECS_DIR, PipelineSpec, TriggerSpec, load_spec

TOKEN = "test-token"


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
    model: str, *, status: str = "firing", fingerprint: str = "f1", group: str = "g"
) -> bytes:
    """An Alertmanager webhook (version 4) notification with one alert for ``model``."""
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
                "startsAt": "2026-11-21T10:00:00Z",
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


@pytest.fixture
def kit() -> SimpleNamespace:
    """The builders above, for tests (test modules cannot import each other here)."""
    return SimpleNamespace(
        token=TOKEN,
        register_models=register_models,
        alertmanager_body=alertmanager_body,
        generic_body=generic_body,
    )
