"""Engine set-up, short transactions and error translation for the state store.

SQLite (the default) gets WAL, a busy timeout and foreign keys on every
connection, and write transactions that start with ``BEGIN IMMEDIATE`` so
that concurrent writers queue on the busy timeout instead of failing on a
lock upgrade.  PostgreSQL goes through psycopg 3 with pre-ping so a restarted
server does not break a long-running daemon.  Every SQLAlchemy error leaving
this module is a :class:`StoreFailure` naming the operation, never the URL's
password or the statement's parameters.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from apexcal.errors import StoreFailure, StoreUnavailable

SQLITE_BUSY_TIMEOUT_MS = 10_000


def safe_url(url: str | URL) -> str:
    """The URL as text with any password masked, fit for logs and messages."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "<unparseable database URL>"
    return parsed.render_as_string(hide_password=True)


def describe(exc: BaseException) -> str:
    """A one-line reason for a database error, without SQL text or bound parameters."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        first = str(exc.orig).strip().splitlines()
        return f"{type(exc.orig).__name__}: {first[0] if first else 'no message'}"
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else 'no message'}"


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 10) -> Engine:
    """An Engine for a ``sqlite://`` or ``postgresql+psycopg://`` URL, tuned for the store.

    ``pool_size`` and ``max_overflow`` bound the PostgreSQL connections it holds.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreUnavailable("open", f"not a database URL: {safe_url(url)}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        if parsed.get_driver_name() in ("", "psycopg2"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            return create_engine(
                parsed, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow
            )
        except (SQLAlchemyError, ImportError) as exc:
            raise StoreUnavailable("open", f"{safe_url(parsed)}: {describe(exc)}") from exc
    raise StoreUnavailable(
        "open", f"unsupported database {backend!r} in {safe_url(parsed)} (use sqlite or postgresql)"
    )


def sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or ``None`` for an in-memory database."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def _sqlite_engine(url: URL) -> Engine:
    path = sqlite_path(url)
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if path is None:
        # One shared connection so that every thread sees the same in-memory
        # database; such a store is for tests and one thread at a time.
        kwargs["poolclass"] = StaticPool
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(
                "open", f"cannot create the directory {path.parent}: {exc.strerror or exc}"
            ) from exc
        kwargs["pool_size"] = 5
        kwargs["max_overflow"] = 10
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # We emit BEGIN ourselves (below): the sqlite3 module's own transaction
        # handling does not begin on SELECT and cannot BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if path is not None:
                _enable_wal(cursor)
                # In WAL mode NORMAL survives any process crash (the guarantee sync
                # relies on); only a power loss may forget the last commits.
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("apexcal_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """Put the database file in WAL mode (a persistent setting), waiting out other openers.

    The switch needs the file to itself.  While another connection holds a
    write lock on it (a concurrent opener migrating a new database), SQLite
    answers "database is locked" at once instead of calling its busy handler,
    so the switch is retried here until the busy timeout has passed.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


class Database:
    """An Engine plus the two kinds of short transaction the store uses."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.url = safe_url(engine.url)
        # Feed tokens issued or revoked through this database object: the feed
        # server's token cache in this process drops what it holds when it moves.
        self.feed_token_writes = 0

    @contextmanager
    def read(self, operation: str) -> Iterator[Connection]:
        """A read-only transaction; errors become :class:`StoreFailure` naming ``operation``."""
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise StoreFailure(operation, describe(exc)) from exc

    @contextmanager
    def write(self, operation: str) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on success."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(apexcal_write=True)
                with conn.begin():
                    yield conn
        except SQLAlchemyError as exc:
            raise StoreFailure(operation, describe(exc)) from exc

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
