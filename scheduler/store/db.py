"""Engines, migrations and sessions for SQLite (default) and PostgreSQL.

SQLite runs in WAL mode with foreign keys on and a busy timeout, so the
daemon and a CLI command can share the file. PostgreSQL goes through
psycopg 3 and must use TLS unless the server is on this machine.
``migrate`` brings the schema to the newest revision on every start; on
PostgreSQL an advisory lock lets two instances start at once.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import sessionmaker

from scheduler.errors import BackendUnavailable, ConfigError
from scheduler.tls import postgres_url_problem

MIGRATIONS = Path(__file__).with_name("migrations")
BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_S = 10
# pg_advisory_xact_lock key: any constant shared by all sparring instances.
MIGRATION_LOCK = 0x5350_4152_4D49_47  # "SPARMIG"


def database_url(storage_url: str, data_dir: Path) -> str:
    """``storage.url`` as given, or SQLite in the data directory when empty."""
    if storage_url.strip():
        return storage_url.strip()
    return f"sqlite:///{Path(data_dir).absolute() / 'sparring.db'}"


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError("storage.url is not a database URL; use sqlite:///PATH or postgresql://HOST/DB.") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        return _postgres_engine(parsed)
    raise ConfigError(f"storage.url uses {backend!r}; sparring supports sqlite and postgresql.")


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:":
        _create_private(Path(url.database))
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        _wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable enough in WAL mode
        cursor.close()

    return engine


def _wal(cursor) -> None:
    """Switch to WAL. On a new file, several processes starting at once race
    for the exclusive lock this needs, and SQLite answers "locked" at once
    instead of waiting: try again for a while."""
    for _ in range(100):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA journal_mode=WAL")


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only (WAL files inherit it)."""
    if path.exists() or not path.parent.is_dir():
        return  # a missing directory is reported when connecting
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _hosts(url: URL) -> list[str]:
    """The server or servers the URL names: its host, or its ``host=``
    parameters (several, for a standby: ``?host=a:5432&host=b:5432``)."""
    if url.host:
        return [url.host]
    named = url.query.get("host", "")
    return list(named) if isinstance(named, tuple) else [str(named)]


def _postgres_engine(url: URL) -> Engine:
    problem = postgres_url_problem(url.render_as_string(hide_password=False))
    if problem:
        raise ConfigError(f"storage.url: {problem}.")
    try:
        import psycopg  # noqa: F401  (optional dependency: sparring[postgres])
    except ImportError:
        raise ConfigError("storage.url names PostgreSQL, but psycopg 3 is not installed; install sparring[postgres].") from None
    url = url.set(drivername="postgresql+psycopg")
    connect_args = {} if "connect_timeout" in url.query else {"connect_timeout": CONNECT_TIMEOUT_S}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def where(engine: Engine) -> str:
    """The database named for messages: host:port or file, never credentials."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"SQLite database {url.database or ':memory:'}"
    if url.host:
        return f"PostgreSQL database at {url.host}:{url.port or 5432}"
    hosts = [h if h.startswith("/") or ":" in h else f"{h}:{url.port or 5432}" for h in _hosts(url) if h]
    return f"PostgreSQL database at {', '.join(hosts) or 'local socket'}"


@contextmanager
def connect(engine: Engine) -> Iterator[Connection]:
    """A transaction; an unreachable database becomes one ``BackendUnavailable`` sentence."""
    try:
        conn = engine.connect()
    except DBAPIError as exc:
        raise BackendUnavailable(f"The {where(engine)} could not be reached ({_reason(exc, engine)}).") from None
    with conn, conn.begin():
        yield conn


def _reason(exc: DBAPIError, engine: Engine) -> str:
    lines = [line.strip() for line in str(exc.orig).splitlines() if line.strip()]
    reason = lines[-1] if lines else type(exc.orig).__name__
    password = engine.url.password
    if password:
        reason = reason.replace(str(password), "***")
    return reason.rstrip(".")[:200]


def disk_full(exc: BaseException | None) -> bool:
    """SQLite's "database or disk is full" (SQLITE_FULL), or ENOSPC/EDQUOT
    from the file system: the disk, not the data, is at fault. Looks down
    the chain too: SQLite rolls back on SQLITE_FULL, so what surfaces may be
    the rollback's own error about a savepoint that is gone."""
    seen = 0
    while exc is not None and seen < 5:
        if _disk_full(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _disk_full(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return True
    if isinstance(orig, OSError) and orig.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "database or disk is full" in str(orig)


def connection_lost(exc: BaseException) -> bool:
    """The database went away under a transaction (restart, failover, a cut
    connection): no fault of the data being written, so worth a retry."""
    if isinstance(exc, BackendUnavailable):
        return True
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(exc, OperationalError) and not disk_full(exc)
    return False


def migrate(engine: Engine) -> None:
    """Upgrade the schema to head; safe on every start and on concurrent starts."""
    with connect(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock before reading the version
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def alembic_config() -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def session_factory(engine: Engine) -> sessionmaker:
    # Objects stay readable after commit: services return rows from transactions.
    return sessionmaker(engine, expire_on_commit=False)
