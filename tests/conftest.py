"""Fixtures every suite shares: isolated settings and a registry on embedded defaults."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Tests never talk to a Prefect server of the user's, and never pay for heartbeats.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_API_ENABLE_HTTP2", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# The CLI's consoles take their width when first imported: wide tables in every worker.
os.environ.setdefault("COLUMNS", "200")

from registry.store import Registry
from retrain.config.settings import Settings
from retrain.config.wiring import build_registry

if TYPE_CHECKING:
    from serving.runner import RunningServer


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


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh RETRAIN_HOME for CLI runs, with wide tables and the settings cache cleared."""
    from retrain.cli.common import settings as cli_settings

    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    cli_settings.cache_clear()
    yield tmp_path / "home"
    cli_settings.cache_clear()


@pytest.fixture
def start_app() -> Iterator[Callable[[Any], RunningServer]]:
    """``start_app(app)``: the ASGI ``app`` under uvicorn on a free loopback port, stopped
    after the test."""
    from serving.runner import start_server

    with ExitStack() as stack:
        yield lambda app: stack.enter_context(start_server(app))


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect API on its own SQLite database, heartbeats off, for the session."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=60),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield


# -- PostgreSQL and S3 (area: registry) --------------------------------------------------------
_POSTGRES_URLS = (
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg://root@127.0.0.1:5432/test",
)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[Callable[[], str]]:
    """Makes fresh PostgreSQL catalogs (a URL per call) in a uniquely named database that is
    dropped after the session.

    Uses RETRAIN_TEST_POSTGRES_URL or the server on 127.0.0.1:5432; skips (with the reason
    printed by ``-ra``) only when no server is reachable.
    """
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    candidates = (
        [os.environ["RETRAIN_TEST_POSTGRES_URL"]]
        if "RETRAIN_TEST_POSTGRES_URL" in os.environ
        else list(_POSTGRES_URLS)
    )
    admin = None
    reasons = []
    for candidate in candidates:
        engine = create_engine(
            candidate, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )
        try:
            with engine.connect():
                admin = engine
                base = make_url(candidate)
                break
        except Exception as exc:  # any failure to connect means "no usable server"
            reasons.append(f"{candidate}: {str(exc).splitlines()[0]}")
            engine.dispose()
    if admin is None:
        pytest.skip("no PostgreSQL server reachable: " + "; ".join(reasons))
    # One database per test session; each test gets its own schema in it (fast to make and
    # drop), selected through the connection's search_path.
    name = f"retrain_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    database = base.set(database=name)
    schemas = create_engine(database, isolation_level="AUTOCOMMIT")
    made = 0

    def make() -> str:
        nonlocal made
        made += 1
        schema = f"test_{made}"
        with schemas.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = database.update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    try:
        yield make
    finally:
        schemas.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_database: Callable[[], str]) -> str:
    """The URL of a fresh, empty PostgreSQL schema (in this session's database) for one test."""
    return postgres_database()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server over real HTTP on a free loopback port, with dummy credentials set."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket on the moto server."""
    import uuid

    import boto3

    name = f"retrain-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name
