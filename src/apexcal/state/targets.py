"""Per-target object records, sync state, and the lock that keeps a target single-run.

Every record write is its own short transaction: a cycle records an object
right after the server accepted it, so a crash loses at most the write in
flight, which the next cycle adopts (``If-None-Match`` 412) or re-reads.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from apexcal.errors import StoreFailure, TargetBusy
from apexcal.state._sql import chunks, insert_ignore, upsert
from apexcal.state.database import describe
from apexcal.state.part import StorePart
from apexcal.state.records import ObjectRecord, TargetState
from apexcal.state.tables import ObjectRow, TargetStateRow, table_of

_O = table_of(ObjectRow)
_S = table_of(TargetStateRow)

# Longer error texts are cut: the state keeps a diagnosis, not a log.
MAX_ERROR_TEXT = 2000


def _record(row: Row[Any]) -> ObjectRecord:
    return ObjectRecord(
        target=row.target,
        uid=row.uid,
        activity_id=row.activity_id,
        href=row.href,
        etag=row.etag,
        pushed_hash=row.pushed_hash,
        pushed_done=row.pushed_done,
        done_seen=row.done_seen,
        kind=row.kind,
        updated_at=row.updated_at,
        pending_done=row.pending_done,
        fields=row.fields,
    )


def lock_key(target: str) -> int:
    """A stable signed 64-bit key for ``target`` (PostgreSQL advisory locks take a bigint)."""
    digest = hashlib.sha256(b"apexcal.target\0" + target.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class TargetsPart(StorePart):
    """Object records and sync state per target, and the per-target lock."""

    _local_locks: dict[str, threading.Lock]
    _local_locks_guard: threading.Lock
    _lock_dir: Path | None

    # --- object records -----------------------------------------------------------

    def records(self, target: str) -> dict[str, ObjectRecord]:
        """Every record of ``target``, by UID (a full listing diff needs them all)."""
        with self._db.read("read object records") as conn:
            rows = conn.execute(select(_O).where(_O.c.organization == self._org, _O.c.target == target))
            return {r.uid: _record(r) for r in rows}

    def records_for_activities(
        self, target: str, activity_ids: Iterable[int]
    ) -> list[ObjectRecord]:
        """The records of ``target`` for the given activities (what an incremental cycle needs)."""
        found: list[ObjectRecord] = []
        with self._db.read("read object records") as conn:
            for chunk in chunks(sorted(set(activity_ids))):
                rows = conn.execute(
                    select(_O).where(
                        _O.c.organization == self._org,
                        _O.c.target == target,
                        _O.c.activity_id.in_(chunk),
                    )
                )
                found.extend(_record(r) for r in rows)
        return found

    def records_outside(self, target: str, collection: str, kinds: Iterable[str]) -> list[ObjectRecord]:
        """The records of ``target`` of ``kinds`` whose href lies outside the path ``collection``.

        Records naming an object in another calendar (UIDs held elsewhere);
        read as two ranges of the href index, so the cost follows how many
        there are, not the size of the target.
        """
        prefix = collection if collection.endswith("/") else collection + "/"
        after = prefix[:-1] + chr(ord("/") + 1)  # the first path greater than every one under prefix
        with self._db.read("read object records") as conn:
            found: list[ObjectRecord] = []
            for outside in (_O.c.href < prefix, _O.c.href >= after):
                rows = conn.execute(select(_O).where(
                        _O.c.organization == self._org,
                        _O.c.target == target,
                        outside,
                        _O.c.kind.in_(sorted(set(kinds))),
                    ))
                found.extend(_record(r) for r in rows)
            return found

    def records_for_hrefs(self, target: str, hrefs: Iterable[str]) -> dict[str, ObjectRecord]:
        """The records of ``target`` at the given hrefs, by href (for sync-collection results)."""
        found: dict[str, ObjectRecord] = {}
        with self._db.read("read object records") as conn:
            for chunk in chunks(sorted(set(hrefs))):
                rows = conn.execute(select(_O).where(
                        _O.c.organization == self._org, _O.c.target == target, _O.c.href.in_(chunk)
                    ))
                found.update((r.href, _record(r)) for r in rows)
        return found

    def put_record(self, rec: ObjectRecord) -> None:
        """Insert or replace the record of one object, committed at once (``fields`` None: kept as stored)."""
        values: dict[str, Any] = {
            "organization": self._org,
            "target": rec.target,
            "uid": rec.uid,
            "activity_id": rec.activity_id,
            "href": rec.href,
            "etag": rec.etag,
            "pushed_hash": rec.pushed_hash,
            "pushed_done": rec.pushed_done,
            "done_seen": rec.done_seen,
            "kind": rec.kind,
            "updated_at": rec.updated_at or self._clock(),
            "pending_done": rec.pending_done,
        }
        if rec.fields is not None:
            # None leaves the stored baselines alone: records read before a cycle set them
            # are written back with None (set_record_fields is their one writer otherwise).
            values["fields"] = dict(rec.fields)
        with self._db.write("write object record") as conn:
            upsert(conn, _O, values, keys=("organization", "target", "uid"))

    def set_pending_done(self, target: str, entries: Iterable[tuple[str, bool | None]]) -> None:
        """Note (or, with None, clear) the completion of updates about to be sent, in one transaction.

        Written before the PUTs so that after a crash between a PUT and its
        record the next cycle recognises the object it reads as our own write.
        """
        with self._db.write("note pending completions") as conn:
            for uid, done in entries:
                conn.execute(
                    update(_O)
                    .where(_O.c.organization == self._org, _O.c.target == target, _O.c.uid == uid)
                    .values(pending_done=done)
                )

    def delete_record(self, target: str, uid: str) -> bool:
        """Forget one object (after its remote deletion); return whether a record existed."""
        with self._db.write("delete object record") as conn:
            result = conn.execute(delete(_O).where(
                    _O.c.organization == self._org, _O.c.target == target, _O.c.uid == uid
                ))
        return result.rowcount > 0

    def count_records(self, target: str) -> int:
        """How many objects ``target`` holds according to the records."""
        with self._db.read("count object records") as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(_O)
                    .where(_O.c.organization == self._org, _O.c.target == target)
                ).scalar_one()
            )

    # --- target state -------------------------------------------------------------

    def target_state(self, target: str) -> TargetState:
        """The state of ``target`` (defaults when it never ran)."""
        with self._db.read("read target state") as conn:
            row = conn.execute(select(_S).where(_S.c.organization == self._org, _S.c.target == target)).first()
        return TargetState(target=target) if row is None else _state(row)

    def all_target_states(self) -> list[TargetState]:
        """The state of every target that ever ran, by name."""
        with self._db.read("read target states") as conn:
            return [_state(r) for r in conn.execute(select(_S).where(_S.c.organization == self._org).order_by(_S.c.target))]

    def set_sync_token(self, target: str, token: str | None) -> None:
        """Store the server's sync token (``None`` forgets it: the next cycle lists in full)."""
        self._update_state(target, "store sync token", sync_token=token)

    def set_caldav_reconciled(self, target: str, at: datetime) -> None:
        """Remember when the calendar's full listing was last compared with the records."""
        self._update_state(target, "record calendar reconcile", last_caldav_reconcile_at=at)

    def set_mirror_seq_seen(self, target: str, seq: int) -> None:
        """Remember the mirror change sequence this target has handled."""
        self._update_state(target, "store mirror position", mirror_seq_seen=seq)

    def record_success(self, target: str, at: datetime, summary: Mapping[str, Any]) -> None:
        """A cycle succeeded: reset the failure count and keep its summary.

        The last error stays for diagnosis; it is current only when
        ``last_error_at`` is later than ``last_success_at``.
        """
        self._update_state(
            target,
            "record cycle success",
            last_success_at=at,
            last_summary=dict(summary),
            consecutive_failures=0,
        )

    def record_failure(self, target: str, at: datetime, kind: str, message: str) -> None:
        """A cycle failed: keep its error kind, text and time, count consecutive failures."""
        with self._db.write("record cycle failure") as conn:
            insert_ignore(conn, _S, {"organization": self._org, "target": target})
            conn.execute(
                update(_S)
                .where(_S.c.organization == self._org, _S.c.target == target)
                .values(
                    last_error=message[:MAX_ERROR_TEXT],
                    last_error_kind=kind,
                    last_error_at=at,
                    consecutive_failures=_S.c.consecutive_failures + 1,
                )
            )

    def forget_target(self, target: str) -> None:
        """Drop every record and the state of a target no longer configured."""
        with self._db.write("forget target") as conn:
            conn.execute(delete(_O).where(_O.c.organization == self._org, _O.c.target == target))
            conn.execute(delete(_S).where(_S.c.organization == self._org, _S.c.target == target))

    def _update_state(self, target: str, operation: str, **values: Any) -> None:
        with self._db.write(operation) as conn:
            insert_ignore(conn, _S, {"organization": self._org, "target": target})
            conn.execute(update(_S)
                .where(_S.c.organization == self._org, _S.c.target == target)
                .values(**values))

    # --- locking --------------------------------------------------------------------

    @contextmanager
    def target_lock(self, target: str) -> Iterator[None]:
        """Hold ``target``'s lock for the block, or raise :class:`TargetBusy` at once.

        PostgreSQL: a session advisory lock on a connection kept for the block,
        so any worker on any host is excluded and a crashed worker's lock dies
        with its connection.  SQLite file: an exclusive ``flock`` on a file in
        ``<database>-locks/``, which excludes other threads and processes on
        this host and is released by the kernel when a process dies.  In-memory
        SQLite: a lock local to this store.
        """
        if self._db.dialect == "postgresql":
            with self._pg_lock(target):
                yield
        elif self._lock_dir is not None:
            with self._file_lock(target):
                yield
        else:
            with self._thread_lock(target):
                yield

    @contextmanager
    def _pg_lock(self, target: str) -> Iterator[None]:
        try:
            conn = self._db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except SQLAlchemyError as exc:
            raise StoreFailure("take target lock", describe(exc)) from exc
        try:
            try:
                # Advisory locks are per database, not per schema: key the lock by
                # the schema too, so that installations sharing a database (one
                # schema each) do not exclude each other's targets.
                schema = conn.execute(select(func.current_schema())).scalar_one()
                # The single organization keeps the key it always had, so processes
                # of either version exclude each other during an upgrade.
                scope = f"{schema}\0{self._org}\0" if self._org else f"{schema}\0"
                key = lock_key(scope + target)
                got = conn.execute(select(func.pg_try_advisory_lock(key))).scalar_one()
            except SQLAlchemyError as exc:
                raise StoreFailure("take target lock", describe(exc)) from exc
            if not got:
                raise TargetBusy(target)
            try:
                yield
            finally:
                # A dropped connection has released the lock already.
                with suppress(SQLAlchemyError):
                    conn.execute(select(func.pg_advisory_unlock(key)))
        finally:
            conn.close()

    @contextmanager
    def _file_lock(self, target: str) -> Iterator[None]:
        assert self._lock_dir is not None
        scoped = f"{self._org}\0{target}" if self._org else target
        name = hashlib.sha256(scoped.encode()).hexdigest()[:32] + ".lock"
        try:
            self._lock_dir.mkdir(exist_ok=True)
            fd = os.open(self._lock_dir / name, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreFailure(
                "take target lock", f"{self._lock_dir}: {exc.strerror or exc}"
            ) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TargetBusy(target) from None
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextmanager
    def _thread_lock(self, target: str) -> Iterator[None]:
        with self._local_locks_guard:
            lock = self._local_locks.setdefault(f"{self._org}\0{target}", threading.Lock())
        if not lock.acquire(blocking=False):
            raise TargetBusy(target)
        try:
            yield
        finally:
            lock.release()


def _state(row: Row[Any]) -> TargetState:
    return TargetState(
        target=row.target,
        sync_token=row.sync_token,
        mirror_seq_seen=row.mirror_seq_seen,
        last_success_at=row.last_success_at,
        last_summary=row.last_summary,
        last_error=row.last_error,
        last_error_kind=row.last_error_kind,
        last_error_at=row.last_error_at,
        consecutive_failures=row.consecutive_failures,
        last_caldav_reconcile_at=row.last_caldav_reconcile_at,
    )
