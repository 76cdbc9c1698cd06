"""Credentials never appear in registry errors, and the catalog's files are the owner's alone."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.blobstore import open_blob_store
from registry.catalog import Catalog
from registry.errors import ConfigError, DatabaseUnavailableError, StoreUnavailableError
from registry.redaction import redact_text, redact_url
from registry.s3store import S3BlobStore
from registry.store import Registry

SECRET = "Hunter2-s3cr3t"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql+psycopg://bob:{SECRET}@db:5432/r", "postgresql+psycopg://bob:***@db:5432/r"),
        (f"postgresql://bob:{SECRET}@db/r?sslmode=require", "postgresql://bob:***@db/r?sslmode="),
        (f"postgresql://db/r?password={SECRET}&sslmode=require", "password=***&sslmode=require"),
        ("postgresql://bob:p%40ss@db/r", "postgresql://bob:***@db/r"),
        (f"http://AKIAEXAMPLE:{SECRET}/x@minio:9000", "http://AKIAEXAMPLE:***@minio:9000"),
        (f"postgresql://bob:{SECRET}@db:notaport/r", "postgresql://bob:***@db:notaport/r"),
        ("https://s3.example/b/k?X-Amz-Signature=abc123", "X-Amz-Signature=***"),
        ("sqlite:////abs/path/registry.db", "sqlite:////abs/path/registry.db"),
        ("postgresql+psycopg://bob@db/r", "postgresql+psycopg://bob@db/r"),
    ],
)
def test_redact_url_hides_passwords_and_secret_parameters(url: str, shown: str) -> None:
    redacted = redact_url(url)
    assert shown in redacted
    assert SECRET not in redacted and "p%40ss" not in redacted and "abc123" not in redacted


def test_redact_text_scrubs_a_driver_message_without_mangling_it() -> None:
    url = "postgresql://bob:pass@db/r"
    message = 'password authentication failed for user "bob" (dsn: host=db password=pass)'
    assert redact_text(message, url) == (
        'password authentication failed for user "bob" (dsn: host=db password=***)'
    )
    assert redact_text("reached postgresql://bob:pass@db/r then 'pass'", url) == (
        "reached postgresql://bob:***@db/r then '***'"
    )


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:9/none",  # nothing listens on 9
        f"postgresql+psycopg://postgres@127.0.0.1:9/none?password={SECRET}",
    ],
)
def test_an_unreachable_database_error_shows_no_password(url: str) -> None:
    with pytest.raises(DatabaseUnavailableError) as caught:
        Catalog.open(url)
    message = str(caught.value)
    assert SECRET not in message and "***" in message and "\n" not in message


@pytest.mark.postgres
def test_a_refused_postgresql_login_shows_no_password(postgres_url: str) -> None:
    from sqlalchemy.engine import make_url

    # The server answers (and refuses the database) after it has seen the password.
    url = make_url(postgres_url).set(password=SECRET, database="no_such_db_for_retrain")
    with pytest.raises(DatabaseUnavailableError, match="no_such_db_for_retrain") as caught:
        Catalog.open(url.render_as_string(hide_password=False))
    assert SECRET not in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [f"postgresql://bob:{SECRET}@db:notaport/r", f"mysql://bob:{SECRET}@db/r", f"://x:{SECRET}@"],
)
def test_a_malformed_database_url_is_one_line_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Catalog.open(url)
    assert SECRET not in str(caught.value) and "\n" not in str(caught.value)


def test_s3_endpoint_credentials_never_appear_in_store_errors() -> None:
    endpoint = f"http://AKIAEXAMPLE:{SECRET}@127.0.0.1:9"
    store = S3BlobStore("bucket", endpoint_url=endpoint, region="us-east-1")
    store.client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(StoreUnavailableError) as caught:
        store.put_bytes(b"x")
    assert SECRET not in str(caught.value)
    with pytest.raises(ConfigError) as bad:
        open_blob_store(f"ftp://user:{SECRET}@host/blobs")
    assert SECRET not in str(bad.value)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The most permissive umask: whatever the registry makes private, it makes so itself."""
    saved = os.umask(0)
    try:
        yield
    finally:
        os.umask(saved)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("loose_umask")
def test_a_new_sqlite_catalog_and_its_side_files_are_0600(tmp_path: Path) -> None:
    database = tmp_path / "home" / "registry.db"
    with Registry.open(f"sqlite:///{database}", (tmp_path / "blobs").as_uri()) as reg:
        reg.put_bytes(b"weights")
        reg.catalog.append_event("drift.detected", model="m")
        side_files = [Path(f"{database}{suffix}") for suffix in ("-wal", "-shm", ".migrate.lock")]
        assert all(p.exists() for p in side_files)
        for path in (database, *side_files):
            assert _mode(path) == 0o600, path
        for folder in (reg.blobs.root, reg.blobs.root / "sha256"):  # type: ignore[attr-defined]
            assert not _mode(folder) & stat.S_IWOTH, folder


def test_an_older_world_readable_catalog_loses_other_access_on_open(tmp_path: Path) -> None:
    database = tmp_path / "registry.db"
    with Registry.open(f"sqlite:///{database}", (tmp_path / "blobs").as_uri()):
        pass
    database.chmod(0o644)  # as catalogs were made before
    with Registry.open(f"sqlite:///{database}", (tmp_path / "blobs").as_uri()) as reg:
        assert reg.catalog.list_blobs() == []
    assert _mode(database) == 0o640
