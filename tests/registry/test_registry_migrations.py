"""Schema migrations: an older catalog is upgraded in place when opened."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from registry.catalog import Catalog
from registry.database import alembic_config, create_catalog_engine
from registry.inbox import NewAlert


def test_an_older_catalog_is_upgraded_on_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_catalog_engine(url)
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), "0001")
        conn.commit()
    engine.dispose()

    catalog = Catalog.open(url)
    try:
        with catalog.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == "0005"
            indexes = {ix["name"] for ix in inspect(conn).get_indexes("blobs")}
        assert "ix_blobs_size" in indexes
        assert catalog.list_models() == []
    finally:
        catalog.close()


@pytest.mark.postgres
def test_postgresql_refuses_truncate_of_the_event_log(postgres_url: str) -> None:
    engine = create_catalog_engine(postgres_url)
    with engine.connect() as conn:  # a catalog from before the TRUNCATE trigger
        command.upgrade(alembic_config(conn), "0002")
        conn.commit()
    engine.dispose()

    catalog = Catalog.open(postgres_url)  # upgraded to 0003 on open
    try:
        catalog.append_event("model.registered", model="m", versions=[1], reason="first")
        catalog.append_event("alias.set", model="m", versions=[1], reason="promoted")
        for statement in (
            "TRUNCATE events",
            "TRUNCATE TABLE events RESTART IDENTITY CASCADE",
            "TRUNCATE alerts, events",
        ):
            with catalog.engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
                conn.execute(text(statement))
        assert [e.reason for e in catalog.events("m")] == ["first", "promoted"]
    finally:
        catalog.close()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_alerts_stored_before_0005_read_as_retrain_alerts(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = create_catalog_engine(url)
    with engine.connect() as conn:  # a catalog from before alerts had an action
        command.upgrade(alembic_config(conn), "0004")
        conn.execute(
            text(
                "INSERT INTO alerts (dedup_key, source, model, status, payload, state, "
                "received_at, updated_at) VALUES ('k', 'generic', 'm', 'firing', '{}', "
                "'submitted', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        conn.commit()
    engine.dispose()

    catalog = Catalog.open(url)  # upgraded to 0005 on open
    try:
        [old] = catalog.recent_alerts()
        assert (old.action, old.state) == ("retrain", "submitted")
        [(new, created)] = catalog.add_alerts(
            [NewAlert("r", "generic", "m", "firing", {}, action="rollback")]
        )
        assert created and new.action == "rollback"
    finally:
        catalog.close()
