"""The writeback journal: completion changes detected remotely, on their way to the CRM.

A change is journaled (committed) before it is sent, and marked sent only
after the API accepted it, so a crash in between re-sends it — harmless, as
setting ``done`` is idempotent.  Marking an entry sent also records, in the
same transaction, that the CRM now holds what the calendar holds (the
object's ``pushed_done`` and ``done_seen``): a crash right after that never
re-sends a delivered writeback over a later CRM change.  A newer detection for the same activity on
the same target supersedes a pending older one with another value, so only
the latest intent is ever sent (the same value keeps the pending entry).

An attempt's start is committed before the request goes out (``sent_at`` on a
pending entry): when its answer never arrives — lost, or the process killed
while waiting — the entry is *in doubt*, and the sync reads the CRM before it
sends it again (:mod:`apexcal.sync.writeback`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, func, select, update

from apexcal.state._sql import chunks
from apexcal.state.part import StorePart
from apexcal.state.records import WritebackEntry, WritebackStatus
from apexcal.state.tables import ObjectRow, WritebackRow, table_of

_W = table_of(WritebackRow)
_O = table_of(ObjectRow)

MAX_ERROR_TEXT = 2000


def _entry(row: Row[Any]) -> WritebackEntry:
    return WritebackEntry(
        id=row.id,
        target=row.target,
        activity_id=row.activity_id,
        done=row.done,
        detected_at=row.detected_at,
        status=cast(WritebackStatus, row.status),
        sent_at=row.sent_at,
        attempts=row.attempts,
        last_error=row.last_error,
    )


class JournalPart(StorePart):
    """The writeback journal."""

    def journal_writebacks(
        self, target: str, entries: Iterable[tuple[int, bool]], at: datetime
    ) -> list[int]:
        """Journal ``(activity_id, done)`` changes as pending; return their ids in order.

        Pending entries of the same target for the same activity are superseded,
        unless one already holds the same value: it stays, with its attempts
        (an attempt in doubt must not be forgotten by journaling it again).
        """
        ids: list[int] = []
        with self._db.write("journal writebacks") as conn:
            for activity_id, done in entries:
                same = conn.execute(
                    select(_W.c.id).where(
                        _W.c.organization == self._org,
                        _W.c.target == target,
                        _W.c.activity_id == activity_id,
                        _W.c.status == "pending",
                        _W.c.done == done,
                    )
                ).scalar_one_or_none()
                if same is not None:
                    ids.append(int(same))
                    continue
                conn.execute(
                    update(_W)
                    .where(
                        _W.c.organization == self._org,
                        _W.c.target == target,
                        _W.c.activity_id == activity_id,
                        _W.c.status == "pending",
                    )
                    .values(status="superseded")
                )
                new_id = conn.execute(
                    _W.insert()
                    .values(
                        organization=self._org,
                        target=target,
                        activity_id=activity_id,
                        done=done,
                        detected_at=at,
                        status="pending",
                        attempts=0,
                    )
                    .returning(_W.c.id)
                ).scalar_one()
                ids.append(int(new_id))
        return ids

    def pending_writebacks(self, target: str | None = None) -> list[WritebackEntry]:
        """Pending entries (of one target, or all), oldest first."""
        query = (
            select(_W)
            .where(_W.c.organization == self._org, _W.c.status == "pending")
            .order_by(_W.c.id)
        )
        if target is not None:
            query = query.where(_W.c.target == target)
        with self._db.read("read pending writebacks") as conn:
            return [_entry(r) for r in conn.execute(query)]

    def writebacks(self, ids: Iterable[int]) -> list[WritebackEntry]:
        """The entries with these ids, whatever their status, by id."""
        found: list[WritebackEntry] = []
        with self._db.read("read writebacks") as conn:
            for chunk in chunks(sorted(set(ids))):
                found.extend(_entry(r) for r in conn.execute(select(_W).where(_W.c.organization == self._org, _W.c.id.in_(chunk))))
        return sorted(found, key=lambda e: e.id)

    def set_writeback_attempt(self, ids: Iterable[int], at: datetime | None) -> int:
        """Stamp pending entries with the start of an attempt (``at``), or clear it (None).

        Committed before the request goes out, so a process killed while
        waiting for the answer leaves the entries in doubt; cleared once it is
        known that the attempt did not reach the CRM.  Returns how many.
        """
        count = 0
        with self._db.write("stamp writeback attempt") as conn:
            for chunk in chunks(sorted(set(ids))):
                result = conn.execute(
                    update(_W)
                    .where(_W.c.organization == self._org, _W.c.id.in_(chunk), _W.c.status == "pending")
                    .values(sent_at=at)
                )
                count += result.rowcount
        return count

    def mark_writebacks_sent(self, ids: Iterable[int], at: datetime) -> int:
        """Mark pending entries sent (the API accepted them); return how many were.

        In the same transaction each entry's object record takes the sent
        completion as both what we pushed and what we saw (``pushed_done``,
        ``done_seen``): the CRM and the calendar now agree on it, so a later
        CRM change is pushed, never overwritten by a re-send.
        """
        return self._close_delivered(ids, "mark writebacks sent", status="sent", sent_at=at, attempts=_W.c.attempts + 1)

    def mark_writebacks_overridden(self, ids: Iterable[int]) -> int:
        """Set pending entries aside as delivered, then changed in the CRM; return how many were.

        For an entry in doubt whose activity the CRM changed after the attempt:
        the CRM's later state wins.  The object records take the entry's
        completion as what both sides held (as :meth:`mark_writebacks_sent`
        does), so the CRM's change is then pushed to the calendar, never
        written over.
        """
        return self._close_delivered(ids, "mark writebacks overridden", status="superseded")

    def _close_delivered(self, ids: Iterable[int], operation: str, **values: Any) -> int:
        count = 0
        with self._db.write(operation) as conn:
            for chunk in chunks(sorted(set(ids))):
                closed = conn.execute(
                    select(_W.c.target, _W.c.activity_id, _W.c.done).where(
                        _W.c.organization == self._org, _W.c.id.in_(chunk), _W.c.status == "pending"
                    )
                ).all()
                result = conn.execute(
                    update(_W)
                    .where(_W.c.organization == self._org, _W.c.id.in_(chunk), _W.c.status == "pending")
                    .values(**values)
                )
                count += result.rowcount
                for row in closed:
                    conn.execute(
                        update(_O)
                        .where(
                            _O.c.organization == self._org,
                            _O.c.target == row.target,
                            _O.c.activity_id == row.activity_id,
                            _O.c.kind == "VTODO",
                        )
                        .values(pushed_done=row.done, done_seen=row.done, pending_done=None)
                    )
        return count

    def supersede_writebacks(self, ids: Iterable[int]) -> int:
        """Set pending entries aside unsent (the calendar changed again); return how many were."""
        count = 0
        with self._db.write("supersede writebacks") as conn:
            for chunk in chunks(sorted(set(ids))):
                result = conn.execute(
                    update(_W)
                    .where(_W.c.organization == self._org, _W.c.id.in_(chunk), _W.c.status == "pending")
                    .values(status="superseded")
                )
                count += result.rowcount
        return count

    def mark_writeback_failed(self, ids: Iterable[int], error: str, *, in_doubt: bool = False) -> int:
        """Count a failed attempt on pending entries, keeping them pending; return how many.

        ``in_doubt``: the attempt may have been applied (no answer, or one
        that does not say), so its start (``sent_at``) stays; otherwise it is
        cleared.
        """
        values: dict[str, Any] = {"last_error": error[:MAX_ERROR_TEXT], "attempts": _W.c.attempts + 1}
        if not in_doubt:
            values["sent_at"] = None
        count = 0
        with self._db.write("mark writebacks failed") as conn:
            for chunk in chunks(sorted(set(ids))):
                result = conn.execute(
                    update(_W)
                    .where(_W.c.organization == self._org, _W.c.id.in_(chunk), _W.c.status == "pending")
                    .values(**values)
                )
                count += result.rowcount
        return count

    def count_pending_writebacks(self, target: str | None = None) -> int:
        """How many entries wait to be sent (of one target, or all)."""
        query = (
            select(func.count())
            .select_from(_W)
            .where(_W.c.organization == self._org, _W.c.status == "pending")
        )
        if target is not None:
            query = query.where(_W.c.target == target)
        with self._db.read("count pending writebacks") as conn:
            return int(conn.execute(query).scalar_one())
