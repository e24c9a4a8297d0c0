"""Alembic environment of the state store.

Run programmatically by :func:`apexcal.state.migrate.upgrade`, which hands over
an open connection in ``config.attributes["connection"]``; with only a
``sqlalchemy.url`` (the ``alembic`` command line) it makes its own engine.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from apexcal.state.database import make_engine
from apexcal.state.tables import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
    else:
        engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
        try:
            with engine.connect() as conn:
                _run(conn)
                conn.commit()
        finally:
            engine.dispose()
