"""Schema migrations: an older catalog is upgraded in place when opened."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from registry.catalog import Catalog
from registry.database import alembic_config, create_catalog_engine


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
            assert MigrationContext.configure(conn).get_current_revision() == "0002"
            indexes = {ix["name"] for ix in inspect(conn).get_indexes("blobs")}
        assert "ix_blobs_size" in indexes
        assert catalog.list_models() == []
    finally:
        catalog.close()
