"""A throwaway copy of the state store: a dry run works on it and leaves the real one untouched.

``apexcal sync --dry-run`` pulls into the mirror, plans and journals as a
cycle does; none of that may reach the store.  :func:`scratch_store` gives a
store that starts equal to the real one and forgets everything when closed:

- **SQLite**: a consistent copy of the database file (SQLite's online backup,
  safe while the daemon writes) in a temporary directory, deleted afterwards.
  The real file is only read, so no lock is held on it.
  The copy is migrated when the real store's schema is older.
- **PostgreSQL**: one connection and one transaction around everything,
  each store operation in a savepoint; the transaction is rolled back at the
  end.  Rows the dry run updates are locked until then, so a worker writing
  the same target waits for the dry run to finish.  Its schema must be the
  newest (``apexcal db upgrade``): a migration cannot be rolled back here.
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from apexcal.errors import StoreFailure
from apexcal.state import migrate
from apexcal.state.database import Database, describe, make_engine, sqlite_path
from apexcal.state.store import Store


class _RolledBack(Database):
    """Every transaction a savepoint of one outer transaction that is rolled back on :meth:`dispose`."""

    def __init__(self, db: Database) -> None:
        super().__init__(make_engine(db.engine.url.render_as_string(hide_password=False), pool_size=1, max_overflow=0))
        self._conn = self.engine.connect()
        self._outer = self._conn.begin()
        self._lock = threading.RLock()

    @contextmanager
    def read(self, operation: str) -> Iterator[Connection]:
        with self._lock:
            try:
                with self._conn.begin_nested():
                    yield self._conn
            except SQLAlchemyError as exc:
                raise StoreFailure(operation, describe(exc)) from exc

    write = read

    def dispose(self) -> None:
        with self._lock:
            try:
                self._outer.rollback()
                self._conn.close()
            finally:
                self.engine.dispose()


def _copy_sqlite(source: Path, target: Path) -> None:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    dst.close()
    src.close()


@contextmanager
def scratch_store(store: Store) -> Iterator[Store]:
    """A store equal to ``store`` (same organization view) whose changes are all discarded."""
    db: Database = store._db
    path = sqlite_path(make_url(db.engine.url)) if db.dialect == "sqlite" else None
    if db.dialect == "sqlite" and path is None:
        raise StoreFailure("dry run", "an in-memory SQLite store cannot be copied")
    if path is not None:
        with tempfile.TemporaryDirectory(prefix="apexcal-dry-run-") as tmp:
            copy = Path(tmp) / "state.db"
            if path.exists():  # else a store never used: start from an empty one, create nothing
                _copy_sqlite(path, copy)
            scratch = Store.open(f"sqlite:///{copy}")  # migrates the copy only, if it must
            try:
                yield scratch.for_organization(store.organization)
            finally:
                scratch.close()
        return
    if migrate.current_revision(db) != migrate.head_revision():
        raise StoreFailure("dry run", "the store's schema is not the newest: run `apexcal db upgrade` first")
    rolled = Store(_RolledBack(db))
    try:
        yield rolled.for_organization(store.organization)
    finally:
        rolled.close()
