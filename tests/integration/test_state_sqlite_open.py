"""Opening a SQLite state file while another connection holds it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, cast

from apexcal.state.database import _enable_wal


class _ReportingCursor:
    """A cursor that tells the test each time a statement failed."""

    def __init__(self, cursor: sqlite3.Cursor, failed: threading.Event) -> None:
        self._cursor = cursor
        self._failed = failed

    def execute(self, sql: str) -> Any:
        try:
            return self._cursor.execute(sql)
        except sqlite3.OperationalError:
            self._failed.set()
            raise


def test_wal_switch_waits_for_a_connection_holding_the_new_file(tmp_path: Path) -> None:
    """A second opener of a brand-new file waits for the first instead of failing."""
    path = tmp_path / "state.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE t (x)")

    opener = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    opener.execute("PRAGMA busy_timeout = 10000")
    failed = threading.Event()
    errors: list[BaseException] = []

    def switch() -> None:
        try:
            _enable_wal(cast(sqlite3.Cursor, _ReportingCursor(opener.cursor(), failed)))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=switch)
    thread.start()
    assert failed.wait(timeout=10), "the switch never met the lock"
    holder.execute("COMMIT")
    thread.join(timeout=30)

    assert errors == []
    assert opener.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    holder.close()
    opener.close()
