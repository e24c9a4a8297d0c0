"""Where the job queue of ``apexcal worker`` (procrastinate) lives: its own PostgreSQL schema.

procrastinate's tables and functions refer to each other unqualified, so they
are created with that schema first on the ``search_path`` and used through
connections whose ``search_path`` is that schema alone.  The schema is named
after the state's own (``procrastinate`` beside ``public``,
``<schema>_procrastinate`` otherwise), so installations sharing one database
keep separate queues.  procrastinate tracks no migrations of its own: the
Alembic revisions of the state store apply its schema and, when the pinned
version moves, its migration files.
"""

from __future__ import annotations

from importlib import resources

from sqlalchemy import Connection, func, select

QUEUE_SCHEMA = "procrastinate"


def queue_schema_name(state_schema: str) -> str:
    """The queue's schema for a state store living in ``state_schema``."""
    return QUEUE_SCHEMA if state_schema == "public" else f"{state_schema}_{QUEUE_SCHEMA}"


def current_queue_schema(conn: Connection) -> str:
    """The queue's schema for the state store ``conn`` reaches."""
    return queue_schema_name(conn.execute(select(func.current_schema())).scalar_one())


def procrastinate_schema_sql() -> str:
    """procrastinate's own schema script (of the pinned version)."""
    return (resources.files("procrastinate.sql") / "schema.sql").read_text(encoding="utf-8")


def create_queue_schema(conn: Connection) -> str:
    """Create the queue's schema and procrastinate's objects in it; return the schema's name.

    Runs inside the caller's transaction (an Alembic revision) and leaves its
    ``search_path`` as it found it, so Alembic's own bookkeeping that follows
    still lands in the state's schema.
    """
    schema = current_queue_schema(conn)
    previous = conn.execute(select(func.current_setting("search_path"))).scalar_one()
    quoted = conn.dialect.identifier_preparer.quote_identifier(schema)
    conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
    conn.execute(select(func.set_config("search_path", quoted, True)))
    try:
        # The raw driver connection: the script holds '%' and ':' that a
        # parameter-aware layer would read as placeholders.
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute(procrastinate_schema_sql())
    finally:
        conn.execute(select(func.set_config("search_path", previous, True)))
    return schema


def drop_queue_schema(conn: Connection) -> None:
    """Drop the queue's schema and every job in it."""
    quoted = conn.dialect.identifier_preparer.quote_identifier(current_queue_schema(conn))
    conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {quoted} CASCADE")
