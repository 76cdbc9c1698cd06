"""Engines for the catalog: SQLite (WAL, ``BEGIN IMMEDIATE``, busy timeout) or PostgreSQL.

Also the two things every caller of the database needs: retrying transactions that lost a lock
race, and turning driver errors into one line a user can act on. Migrations run on open, under
a lock, so two processes opening a new database at once do not both create the tables.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import math
import os
import random
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from registry.errors import ConfigError, DatabaseUnavailableError
from registry.filemodes import open_private, private_file
from registry.redaction import redact_text, redact_url

__all__ = [
    "MIGRATION_LOCK_KEY",
    "alembic_config",
    "create_catalog_engine",
    "ensure_schema",
    "is_retryable",
    "jsonable",
    "retrying",
    "unavailable",
]

T = TypeVar("T")

# Keys for pg_advisory_lock: arbitrary, fixed, and unlikely to collide with other applications.
MIGRATION_LOCK_KEY = 0x5265_7472_6169_6E01
_RETRYABLE_PG = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available
_MIGRATIONS = Path(__file__).with_name("migrations")


def normalize_url(database_url: str) -> URL:
    """The SQLAlchemy URL with the psycopg 3 driver chosen for PostgreSQL."""
    try:
        url = make_url(database_url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is no number
        raise ConfigError(
            f"{redact_url(database_url)!r} is not a database URL: use sqlite:///path or "
            "postgresql+psycopg://user@host/db"
        ) from exc
    if url.get_backend_name() in {"postgresql", "postgres"}:
        return url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite":
        return url
    raise ConfigError(f"unsupported catalog database {url.drivername!r}: use SQLite or PostgreSQL")


def _sanitize(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _sanitize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_sanitize(v) for v in value]
    return value


def _json_dumps(value: Any) -> str:
    """JSON for the catalog: NaN and infinity become null (PostgreSQL refuses them), and
    values JSON cannot express (paths, datetimes) are stored as their text."""
    return json.dumps(_sanitize(value), default=str, allow_nan=False)


def jsonable(value: Any) -> Any:
    """``value`` as it will read back from a JSON column."""
    return json.loads(_json_dumps(value))


def _forget_pool_after_fork(engine: Engine) -> None:
    # A forked child must not use its parent's pooled connections (a server would see two
    # clients on one socket); it opens its own, and the parent keeps its connections.
    ref = weakref.ref(engine)

    def reset() -> None:
        alive = ref()
        if alive is not None:
            alive.dispose(close=False)

    os.register_at_fork(after_in_child=reset)


def create_catalog_engine(database_url: str, *, busy_timeout_s: float = 30.0) -> Engine:
    """An engine configured for concurrent writers on SQLite or PostgreSQL."""
    url = normalize_url(database_url)
    if url.get_backend_name() == "postgresql":
        engine = create_engine(
            url,
            pool_size=2,
            max_overflow=4,
            connect_args={"connect_timeout": 5},
            json_serializer=_json_dumps,
        )
        _forget_pool_after_fork(engine)
        return engine
    if url.database and url.database != ":memory:" and not url.query.get("uri"):
        database = Path(url.database).expanduser()
        try:
            database.parent.mkdir(parents=True, exist_ok=True)
            private_file(database)
        except OSError as exc:
            raise ConfigError(
                f"cannot open or create the registry database {database}: {exc.strerror}; "
                "set RETRAIN_HOME or RETRAIN_DATABASE_URL to a writable place"
            ) from exc
    engine = create_engine(
        url, connect_args={"timeout": busy_timeout_s}, json_serializer=_json_dumps
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level so the "begin" hook below decides how to BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        # WAL lets readers run beside the one writer; NORMAL sync is safe (never corrupt) in WAL.
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that upgrades later can
        # fail with "database is locked" without waiting for the busy timeout.
        write = conn.get_execution_options().get("catalog_write", True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    _forget_pool_after_fork(engine)
    return engine


def is_retryable(exc: BaseException) -> bool:
    """True for errors that mean "another transaction held a lock: run it again"."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True  # a pooled connection the server dropped: the next one is fresh
    code = getattr(exc.orig, "sqlstate", None)
    if code in _RETRYABLE_PG:
        return True
    message = str(exc.orig).lower()
    return "database is locked" in message or "database table is locked" in message


def unavailable(exc: BaseException, url: str) -> DatabaseUnavailableError:
    """The one-line error for a database that cannot be used (credentials never shown: a
    driver may quote the connection string back)."""
    shown = redact_url(url) if url else "the catalog"
    detail = str(getattr(exc, "orig", exc)).strip().splitlines()
    first = redact_text(detail[0], url) if detail else type(exc).__name__
    return DatabaseUnavailableError(
        f"cannot use the registry database {shown}: {first}; check that the server is running "
        "and RETRAIN_DATABASE_URL is right"
    )


def retrying(fn: Callable[[], T], *, url: str, deadline_s: float = 60.0) -> T:
    """Run ``fn`` (one whole transaction) again while it loses lock races, up to a deadline."""
    started = time.monotonic()
    delay = 0.002
    while True:
        try:
            return fn()
        except DBAPIError as exc:
            if not is_retryable(exc):
                if isinstance(exc, OperationalError):
                    raise unavailable(exc, url) from exc
                raise
            if time.monotonic() - started > deadline_s:
                raise DatabaseUnavailableError(
                    f"the registry database stayed locked for {deadline_s:.0f} s: another "
                    "process holds a long transaction; retry when it has finished"
                ) from exc
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.25)


def _script_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def alembic_config(connection: Connection) -> Any:
    """Alembic's configuration for running the registry's migrations on ``connection``."""
    config = _script_config()
    config.attributes["connection"] = connection
    return config


@functools.cache
def _head_revision() -> str | None:
    # Read from the migration scripts once per process: every open compares against it.
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_script_config()).get_current_head()


def _current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    revision = MigrationContext.configure(conn).get_current_revision()
    conn.commit()
    return revision


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection holding the cross-process lock under which migrations run."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                conn.commit()
        return
    lock_path = (
        Path(f"{Path(url.database).expanduser()}.migrate.lock")
        if url.database and url.database != ":memory:"
        else None
    )
    with contextlib.ExitStack() as stack:
        if lock_path is not None:
            fd = open_private(lock_path)
            stack.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when the file closes
        yield stack.enter_context(engine.connect())


def ensure_schema(engine: Engine, database_url: str) -> None:
    """Bring the catalog to the newest schema; safe when several processes open it at once."""
    from alembic import command

    def migrate() -> None:
        head = _head_revision()
        with engine.connect().execution_options(catalog_write=False) as conn:
            current = _current_revision(conn)
        if current != head:
            with _migration_lock(engine) as conn:
                if _current_revision(conn) != head:
                    command.upgrade(alembic_config(conn), "head")
                    conn.commit()

    try:
        retrying(migrate, url=database_url)
    except DBAPIError as exc:
        raise unavailable(exc, database_url) from exc
