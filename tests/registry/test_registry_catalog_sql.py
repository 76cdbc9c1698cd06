"""The SQL catalog on SQLite and PostgreSQL: versions, statuses, aliases, events, inbox."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from registry.errors import AliasConflictError, BlobNotFoundError, ConfigError, NotFoundError
from registry.hashing import digest_bytes
from registry.store import Registry


@pytest.fixture
def bundle(reg: Registry) -> str:
    return reg.put_bytes(b"bundle bytes")


def test_versions_count_up_per_model(reg: Registry, bundle: str) -> None:
    made = [
        reg.catalog.register_model_version(
            model, bundle, metrics={"auc": 0.8}, lineage={"seed": 1}, reason="nightly"
        )
        for model in ("loan-default", "loan-default", "lgd", "loan-default")
    ]
    assert [(r.model, r.version) for r in made] == [
        ("loan-default", 1),
        ("loan-default", 2),
        ("lgd", 1),
        ("loan-default", 3),
    ]
    assert reg.catalog.list_models() == ["lgd", "loan-default"]
    assert [r.version for r in reg.catalog.list_model_versions("loan-default")] == [1, 2, 3]
    got = reg.catalog.get_model_version("loan-default", 2)
    assert got.status == "candidate" and got.metrics == {"auc": 0.8}
    assert got.lineage == {"seed": 1} and got.created_at.tzinfo is not None
    kinds = [e.kind for e in reg.catalog.events("loan-default")]
    assert kinds == ["model.registered"] * 3


def test_a_version_needs_its_bundle_blob_first(reg: Registry) -> None:
    with pytest.raises(BlobNotFoundError, match="put"):
        reg.catalog.register_model_version(
            "m", digest_bytes(b"never stored"), metrics={}, lineage={}
        )
    assert reg.catalog.list_models() == []


def test_status_changes_are_logged_and_checked(reg: Registry, bundle: str) -> None:
    reg.catalog.register_model_version("m", bundle, metrics={}, lineage={})
    reg.catalog.set_status("m", 1, "rejected", reason="auc below gate", actor="gate")
    assert reg.catalog.get_model_version("m", 1).status == "rejected"
    event = reg.catalog.events("m", kinds=["model.status"])[0]
    assert (event.versions, event.reason, event.actor) == ([1], "auc below gate", "gate")
    assert event.payload == {"status": "rejected", "previous": "candidate"}
    with pytest.raises(ConfigError, match="unknown status"):
        reg.catalog.set_status("m", 1, "great", reason="", actor="me")
    with pytest.raises(NotFoundError):
        reg.catalog.set_status("m", 9, "retired", reason="", actor="me")


def test_metrics_merge_and_nan_survives(reg: Registry, bundle: str) -> None:
    reg.catalog.register_model_version("m", bundle, metrics={"auc": 0.7}, lineage={})
    reg.catalog.update_metrics("m", 1, {"canary_error_rate": 0.01, "brier": float("nan")})
    metrics = reg.catalog.get_model_version("m", 1).metrics
    assert metrics["auc"] == 0.7 and metrics["canary_error_rate"] == 0.01
    assert math.isnan(metrics["brier"])


def test_alias_compare_and_swap(reg: Registry, bundle: str) -> None:
    for _ in range(3):
        reg.catalog.register_model_version("m", bundle, metrics={}, lineage={})
    cat = reg.catalog
    cat.set_alias("m", "champion", 1, expected=None, reason="first", actor="alice")
    with pytest.raises(AliasConflictError, match="points at 1"):
        cat.set_alias("m", "champion", 2, expected=None, reason="stale", actor="bob")
    cat.set_alias("m", "champion", 2, expected=1, reason="promote", actor="canary")
    with pytest.raises(AliasConflictError):
        cat.set_alias("m", "champion", 3, expected=1, reason="stale", actor="bob")
    cat.set_alias("m", "canary", 3, expected=None, reason="start", actor="canary")
    assert cat.aliases("m") == {"champion": 2, "canary": 3}
    cat.set_alias("m", "canary", None, expected=3, reason="done", actor="canary")
    cat.set_alias("m", "canary", None, expected=None, reason="again", actor="canary")
    assert cat.get_alias("m", "canary") is None and cat.get_alias("m", "champion") == 2
    with pytest.raises(NotFoundError):
        cat.set_alias("m", "champion", 7, expected=2, reason="", actor="x")
    log = [
        (e.kind, e.versions, e.reason)
        for e in cat.events("m", kinds=["alias.set", "alias.cleared"])
    ]
    assert log == [
        ("alias.set", [1], "first"),
        ("alias.set", [2], "promote"),
        ("alias.set", [3], "start"),
        ("alias.cleared", [3], "done"),
    ]


def test_event_log_filters_tails_pages_and_refuses_edits(reg: Registry) -> None:
    cat = reg.catalog
    for i in range(5):
        cat.append_event("drift.detected", model="m", payload={"share": i / 10}, actor="monitor")
    cat.append_event("retrain.started", model="m", versions=[1], reason="drift")
    cat.append_event("retrain.skipped", model="other")
    assert len(cat.events()) == 7
    assert [e.kind for e in cat.events("m", kinds=["retrain.started"])] == ["retrain.started"]
    tail = cat.events("m", limit=2)
    assert [e.kind for e in tail] == ["drift.detected", "retrain.started"]
    first = cat.events("m")[0]
    page = cat.events("m", since_id=first.id, limit=2)
    assert [e.payload.get("share") for e in page] == [0.1, 0.2]
    with cat.engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(text("UPDATE events SET reason = 'rewritten'"))
    with cat.engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(text("DELETE FROM events"))
    assert len(cat.events()) == 7


def test_datasets_are_idempotent_per_name_and_digest(reg: Registry) -> None:
    one = reg.put_bytes(b"snapshot one")
    two = reg.put_bytes(b"snapshot two")
    first = reg.catalog.register_dataset("loans", one, 100, {"income": "float64"})
    again = reg.catalog.register_dataset("loans", one, 100, {"income": "float64"})
    assert again == first
    reg.catalog.register_dataset("loans", two, 120, {"income": "float64"})
    latest = reg.catalog.latest_dataset("loans")
    assert latest is not None and latest.digest == two and latest.rows == 120
    assert reg.catalog.get_dataset(one).schema == {"income": "float64"}
    assert reg.catalog.latest_dataset("nope") is None
    with pytest.raises(NotFoundError):
        reg.catalog.get_dataset(digest_bytes(b"unknown"))


def test_artifacts_latest_per_kind_and_name(reg: Registry) -> None:
    a = reg.put_bytes(b"spec v1")
    b = reg.put_bytes(b"spec v2")
    reg.catalog.register_artifact("pipeline_spec", "loan-default", a, meta={"v": 1})
    reg.catalog.register_artifact("pipeline_spec", "loan-default", b, meta={"v": 2})
    reg.catalog.register_artifact("pipeline_spec", "loan-default", a, meta={"v": 3})
    reg.catalog.register_artifact("drift_report", "loan-default", b)
    latest = reg.catalog.latest_artifact("pipeline_spec", "loan-default")
    assert latest is not None and latest.digest == a and latest.meta == {"v": 3}
    assert len(reg.catalog.artifacts(kind="pipeline_spec")) == 3
    assert len(reg.catalog.artifacts(name="loan-default")) == 4
    assert reg.catalog.latest_artifact("model_card", "loan-default") is None


def test_alert_inbox_dedups_and_tracks_state(reg: Registry) -> None:
    cat = reg.catalog
    alert, created = cat.add_alert(
        "drift:loan-default:2026-11-21T10",
        source="grafana",
        model="loan-default",
        status="firing",
        payload={"share": 0.4},
    )
    again, created_again = cat.add_alert(
        "drift:loan-default:2026-11-21T10",
        source="grafana",
        model="loan-default",
        status="firing",
        payload={"share": 0.9},
    )
    assert created and not created_again and again.id == alert.id
    assert again.payload == {"share": 0.4}
    assert [a.id for a in cat.pending_alerts()] == [alert.id]
    assert cat.pending_alerts(older_than_s=3600) == []
    cat.mark_alert(alert.id, "submitted", flow_run_id="run-123")
    assert cat.pending_alerts() == []
    with pytest.raises(ConfigError):
        cat.mark_alert(alert.id, "exploded")
    with pytest.raises(NotFoundError):
        cat.mark_alert(alert.id + 100, "ignored")


def test_bad_names_and_over_long_values_are_one_line_errors(
    reg: Registry, bundle: str, database_url: str
) -> None:
    reg.catalog.register_model_version("m", bundle, metrics={}, lineage={})
    with pytest.raises(ConfigError, match="alias name"):
        reg.catalog.set_alias("m", "c" * 65, 1, expected=None, reason="", actor="me")
    with pytest.raises(ConfigError, match="model name"):
        reg.catalog.register_model_version(" padded ", bundle, metrics={}, lineage={})
    if database_url.startswith("postgresql"):  # SQLite does not enforce column lengths
        with pytest.raises(ConfigError, match="refused a value") as caught:
            reg.catalog.append_event("k" * 100, model="m")
        assert "\n" not in str(caught.value)
