"""The field writeback journal: calendar edits of start/end, subject and location on their way to the CRM.

Like the completion journal (:mod:`apexcal.state.journal`): an edit is
journaled (committed) before it is sent, an attempt's start is committed
before the request goes out, and an entry is closed only once the CRM is
known to hold it — in the same transaction the object record's per-field
baseline takes the entry's hashes, so a crash right after never re-sends a
delivered edit over a later CRM change.  Setting absolute values is
idempotent, so a crash before the close re-sends nothing the CRM would
count twice; an attempt whose answer was lost is settled by reading the CRM
first (:mod:`apexcal.sync.fieldwriteback`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, func, select, update

from apexcal.state._sql import chunks
from apexcal.state.mirror import StorePart
from apexcal.state.records import FieldWritebackEntry, WritebackStatus
from apexcal.state.tables import FieldWritebackRow, ObjectRow, table_of

_F = table_of(FieldWritebackRow)
_O = table_of(ObjectRow)

MAX_ERROR_TEXT = 2000


def _entry(row: Row[Any]) -> FieldWritebackEntry:
    return FieldWritebackEntry(
        id=row.id,
        target=row.target,
        uid=row.uid,
        activity_id=row.activity_id,
        patch=dict(row.patch),
        agreed=dict(row.agreed),
        detected_at=row.detected_at,
        status=cast(WritebackStatus, row.status),
        sent_at=row.sent_at,
        attempts=row.attempts,
        last_error=row.last_error,
    )


class FieldJournalPart(StorePart):
    """The field writeback journal, and the object records' per-field baselines."""

    def journal_field_writebacks(
        self,
        target: str,
        entries: Iterable[tuple[str, int, Mapping[str, Any], Mapping[str, str]]],
        at: datetime,
    ) -> list[int]:
        """Journal ``(uid, activity_id, patch, agreed)`` edits as pending; return their ids in order."""
        ids: list[int] = []
        with self._db.write("journal field writebacks") as conn:
            for uid, activity_id, patch, agreed in entries:
                new_id = conn.execute(
                    _F.insert()
                    .values(
                        organization=self._org, target=target, uid=uid, activity_id=activity_id,
                        patch=dict(patch), agreed=dict(agreed), detected_at=at, status="pending",
                        attempts=0,
                    )
                    .returning(_F.c.id)
                ).scalar_one()
                ids.append(int(new_id))
        return ids

    def pending_field_writebacks(self, target: str | None = None) -> list[FieldWritebackEntry]:
        """Pending entries (of one target, or all), oldest first."""
        query = select(_F).where(_F.c.organization == self._org, _F.c.status == "pending").order_by(_F.c.id)
        if target is not None:
            query = query.where(_F.c.target == target)
        with self._db.read("read pending field writebacks") as conn:
            return [_entry(r) for r in conn.execute(query)]

    def count_pending_field_writebacks(self, target: str | None = None) -> int:
        """How many field entries wait to be sent (of one target, or all)."""
        query = select(func.count()).select_from(_F).where(_F.c.organization == self._org, _F.c.status == "pending")
        if target is not None:
            query = query.where(_F.c.target == target)
        with self._db.read("count pending field writebacks") as conn:
            return int(conn.execute(query).scalar_one())

    def set_field_writeback_attempt(self, ids: Iterable[int], at: datetime | None) -> int:
        """Stamp pending entries with the start of an attempt (committed before it goes out), or clear it."""
        return self._update_pending(ids, "stamp field writeback attempt", sent_at=at)

    def mark_field_writeback_failed(self, ids: Iterable[int], error: str, *, in_doubt: bool = False) -> int:
        """Count a failed attempt, keeping the entries pending; ``in_doubt`` keeps the attempt's start."""
        values: dict[str, Any] = {"last_error": error[:MAX_ERROR_TEXT], "attempts": _F.c.attempts + 1}
        if not in_doubt:
            values["sent_at"] = None
        return self._update_pending(ids, "mark field writebacks failed", **values)

    def close_field_writebacks(self, ids: Iterable[int], at: datetime, *, overridden: bool = False) -> int:
        """Close pending entries the CRM holds (``sent``), or whose value the CRM changed since (``superseded``).

        In the same transaction each entry's object record takes its
        ``agreed`` hashes as the baseline of those fields: both sides held
        these values, so a later CRM change is pushed, never overwritten by a
        re-send.  Returns how many were closed.
        """
        count = 0
        values: dict[str, Any] = (
            {"status": "superseded"}
            if overridden
            else {"status": "sent", "sent_at": at, "attempts": _F.c.attempts + 1}
        )
        with self._db.write("close field writebacks") as conn:
            for chunk in chunks(sorted(set(ids))):
                rows = conn.execute(
                    select(_F.c.target, _F.c.uid, _F.c.agreed).where(
                        _F.c.organization == self._org, _F.c.id.in_(chunk), _F.c.status == "pending"
                    ).order_by(_F.c.id)
                ).all()
                result = conn.execute(
                    update(_F)
                    .where(_F.c.organization == self._org, _F.c.id.in_(chunk), _F.c.status == "pending")
                    .values(**values)
                )
                count += result.rowcount
                for row in rows:
                    self._merge_fields(conn, row.target, row.uid, dict(row.agreed))
        return count

    def set_record_fields(self, target: str, entries: Iterable[tuple[str, Mapping[str, str]]]) -> int:
        """Merge per-field hashes into object records' baselines (``uid → fields``); return how many changed."""
        count = 0
        with self._db.write("set record fields") as conn:
            for uid, fields in entries:
                count += self._merge_fields(conn, target, uid, dict(fields))
        return count

    def _merge_fields(self, conn: Any, target: str, uid: str, fields: dict[str, str]) -> int:
        where = (_O.c.organization == self._org, _O.c.target == target, _O.c.uid == uid)
        old = conn.execute(select(_O.c.fields).where(*where)).scalar_one_or_none()
        merged = {**(old or {}), **fields}
        if merged == old:
            return 0
        return int(conn.execute(update(_O).where(*where).values(fields=merged)).rowcount)

    def _update_pending(self, ids: Iterable[int], operation: str, **values: Any) -> int:
        count = 0
        with self._db.write(operation) as conn:
            for chunk in chunks(sorted(set(ids))):
                result = conn.execute(
                    update(_F)
                    .where(_F.c.organization == self._org, _F.c.id.in_(chunk), _F.c.status == "pending")
                    .values(**values)
                )
                count += result.rowcount
        return count
