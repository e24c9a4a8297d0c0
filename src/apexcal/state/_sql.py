"""Small dialect-aware SQL helpers shared by the store's parts (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

T = TypeVar("T")

# Well below SQLite's bound-parameter limit and PostgreSQL's, and small enough
# that an IN list stays cheap to plan.
CHUNK = 500


def chunks(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def insert_ignore(conn: Connection, table: Table, values: Mapping[str, Any]) -> None:
    """INSERT a row unless its primary key already exists."""
    if conn.dialect.name == "postgresql":
        conn.execute(postgresql.insert(table).values(dict(values)).on_conflict_do_nothing())
    else:
        conn.execute(sqlite.insert(table).values(dict(values)).on_conflict_do_nothing())


def upsert(
    conn: Connection,
    table: Table,
    values: Mapping[str, Any],
    *,
    keys: Sequence[str],
    update: Sequence[str] | None = None,
) -> None:
    """INSERT a row or, on a conflict on ``keys``, UPDATE its ``update`` columns (default: all others)."""
    columns = update if update is not None else [c for c in values if c not in keys]
    if conn.dialect.name == "postgresql":
        pg = postgresql.insert(table).values(dict(values))
        conn.execute(
            pg.on_conflict_do_update(
                index_elements=list(keys), set_={c: pg.excluded[c] for c in columns}
            )
        )
    else:
        lite = sqlite.insert(table).values(dict(values))
        conn.execute(
            lite.on_conflict_do_update(
                index_elements=list(keys), set_={c: lite.excluded[c] for c in columns}
            )
        )
