"""Programmatic Alembic: bring a database to the newest schema.

The migration scripts ship inside the package (``apexcal/state/migrations``),
so an installed apexcal needs no ``alembic.ini``.  On PostgreSQL the upgrade
runs under a transaction-scoped advisory lock, so many workers starting at
once migrate the database exactly once; on SQLite the write transaction
(``BEGIN IMMEDIATE``) serialises them the same way.

To add a migration after changing :mod:`apexcal.state.tables`, autogenerate
it against a database at head and review it (render PostgreSQL-safe
defaults such as ``sa.false()``)::

    from alembic import command
    from apexcal.state.database import make_engine
    from apexcal.state.migrate import alembic_config

    with make_engine("sqlite:////tmp/head.db").connect() as conn:
        command.revision(alembic_config(conn), message="...", autogenerate=True, rev_id="0002")

The schema test fails until models and migrations agree again.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import SQLAlchemyError

from apexcal.errors import StoreUnavailable
from apexcal.state.database import Database, describe

SCRIPT_LOCATION = "apexcal.state:migrations"

# An arbitrary constant: the advisory lock key that serialises schema upgrades.
_MIGRATION_LOCK_KEY = 0x61706578_63616C00


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations (and ``connection`` if given)."""
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration's revision id."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise RuntimeError("no migrations packaged")
    return head


def current_revision(db: Database) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    try:
        with db.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise StoreUnavailable("read schema revision", f"{db.url}: {describe(exc)}") from exc


def upgrade(db: Database) -> tuple[str | None, str]:
    """Apply every pending migration; return the revisions (before, after).

    A database already at head costs one small query.
    """
    head = head_revision()
    before = current_revision(db)
    if before == head:
        return before, head
    try:
        with db.engine.connect() as conn:
            conn.execution_options(apexcal_write=True)
            with conn.begin():
                if db.dialect == "postgresql":
                    conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
                command.upgrade(alembic_config(conn), "head")
    except SQLAlchemyError as exc:
        raise StoreUnavailable("upgrade schema", f"{db.url}: {describe(exc)}") from exc
    return before, head
