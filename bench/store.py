"""Benchmark: what recording one written object costs the state store, beside a raw SQLite upsert.

Every write the sync engine is answered for is recorded at once, one row per
object (``Store.put_record``, one transaction each: a killed cycle must
leave a record for every write the server accepted).  This script times,
in one process on a scratch SQLite file (WAL, as the store opens it):

* ``Store.put_record`` of ``--rows`` distinct objects (inserts), then of the
  same objects again (updates);
* the floor: the same rows upserted with the ``sqlite3`` module and one
  hand-written ``INSERT … ON CONFLICT DO UPDATE``, one transaction each.

CPU time per row (``time.process_time``) and wall time are printed, best of
``--rounds``.  To compare with another checkout, run it with that checkout's
``src`` first on ``PYTHONPATH``.

Run: ``.venv/bin/python bench/store.py [--rows 2000] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy

from apexcal import log
from apexcal.state import ObjectRecord, Store


def _records(rows: int, etag: str) -> list[ObjectRecord]:
    return [
        ObjectRecord(target="t", uid=f"apexcal-27-{i}@example.com", activity_id=i, href=f"/cal/apexcal-27-{i}.ics",
                     etag=etag, pushed_hash="0" * 64, pushed_done=False, done_seen=None, kind="VEVENT")
        for i in range(rows)
    ]


def store_rows(path: Path, rows: int) -> tuple[float, float, float, float]:
    """CPU and wall seconds per row of ``put_record``: inserts, then updates."""
    with Store.open(f"sqlite:///{path}") as store:
        figures = []
        for etag in ('"1"', '"2"'):
            records = _records(rows, etag)
            cpu, wall = time.process_time(), time.perf_counter()
            for rec in records:
                store.put_record(rec)
            figures += [(time.process_time() - cpu) / rows, (time.perf_counter() - wall) / rows]
    return figures[0], figures[1], figures[2], figures[3]


def raw_rows(path: Path, rows: int) -> tuple[float, float]:
    """CPU and wall seconds per row of a hand-written upsert through ``sqlite3``, one transaction each."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE o (org INT, target TEXT, uid TEXT, activity_id INT, href TEXT, etag TEXT, "
               "pushed_hash TEXT, kind TEXT, PRIMARY KEY (org, target, uid))")
    sql = ("INSERT INTO o VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (org, target, uid) DO UPDATE SET "
           "activity_id = excluded.activity_id, href = excluded.href, etag = excluded.etag, "
           "pushed_hash = excluded.pushed_hash, kind = excluded.kind")
    cpu, wall = time.process_time(), time.perf_counter()
    for rec in _records(rows, '"1"'):
        db.execute("BEGIN IMMEDIATE")
        db.execute(sql, (27, rec.target, rec.uid, rec.activity_id, rec.href, rec.etag, rec.pushed_hash, rec.kind))
        db.execute("COMMIT")
    result = (time.process_time() - cpu) / rows, (time.perf_counter() - wall) / rows
    db.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    log.configure("warning")
    import apexcal

    print(f"apexcal from {Path(apexcal.__file__).parent}, Python {platform.python_version()}, "
          f"SQLAlchemy {sqlalchemy.__version__}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}")
    best_store: list[tuple[float, float, float, float]] = []
    best_raw: list[tuple[float, float]] = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            best_store.append(store_rows(Path(tmp) / "state.db", args.rows))
            best_raw.append(raw_rows(Path(tmp) / "raw.db", args.rows))
    ins_cpu, ins_wall, upd_cpu, upd_wall = min(best_store)
    raw_cpu, raw_wall = min(best_raw)
    ms = 1e3
    print(f"{args.rows} rows, best of {args.rounds}, per row:")
    print(f"  Store.put_record, insert:   {ms * ins_cpu:.3f} ms CPU, {ms * ins_wall:.3f} ms wall")
    print(f"  Store.put_record, update:   {ms * upd_cpu:.3f} ms CPU, {ms * upd_wall:.3f} ms wall")
    print(f"  raw sqlite3 upsert (floor): {ms * raw_cpu:.3f} ms CPU, {ms * raw_wall:.3f} ms wall")
    print(f"  put_record insert / floor:  {ins_cpu / raw_cpu:.1f}x CPU")


if __name__ == "__main__":
    sys.exit(main())
