"""Small dialect-aware SQL helpers shared by the store's parts (SQLite and PostgreSQL)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import BindParameter, Connection, Executable, Table, bindparam
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
    conn.execute(_insert_ignore(conn.dialect.name, table, tuple(values)), dict(values))


def upsert(
    conn: Connection,
    table: Table,
    values: Mapping[str, Any],
    *,
    keys: Sequence[str],
    update: Sequence[str] | None = None,
) -> None:
    """INSERT a row or, on a conflict on ``keys``, UPDATE its ``update`` columns (default: all others)."""
    columns = tuple(update) if update is not None else tuple(c for c in values if c not in keys)
    conn.execute(_upsert(conn.dialect.name, table, tuple(values), tuple(keys), columns), dict(values))


# The statements are built once per table and column set and executed with the
# row as parameters: building an INSERT … ON CONFLICT for every row (its
# ``excluded`` namespace proxies every column of the table) cost more CPU than
# running it, and one object written is one row.


@functools.cache
def _insert_ignore(dialect: str, table: Table, names: tuple[str, ...]) -> Executable:
    row: dict[str, BindParameter[Any]] = {n: bindparam(n) for n in names}
    if dialect == "postgresql":
        return postgresql.insert(table).values(row).on_conflict_do_nothing()
    return sqlite.insert(table).values(row).on_conflict_do_nothing()


@functools.cache
def _upsert(
    dialect: str, table: Table, names: tuple[str, ...], keys: tuple[str, ...], columns: tuple[str, ...]
) -> Executable:
    row: dict[str, BindParameter[Any]] = {n: bindparam(n) for n in names}
    if dialect == "postgresql":
        pg = postgresql.insert(table).values(row)
        return pg.on_conflict_do_update(index_elements=list(keys), set_={c: pg.excluded[c] for c in columns})
    lite = sqlite.insert(table).values(row)
    return lite.on_conflict_do_update(index_elements=list(keys), set_={c: lite.excluded[c] for c in columns})
