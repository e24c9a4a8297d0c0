"""The mirror of the CRM: activities, watermark and change sequence.

Each organization has one ``mirror_state`` row holding the pull watermark, the
time of the last reconcile sweep and ``change_seq``, a counter bumped once by
every transaction that changes the mirror.  Every activity row changed by
that transaction (new, new content, deleted, revived) carries the new value,
so "what changed since my last cycle" is an indexed range query and a cycle
with nothing to do costs one row read, whatever the size of the mirror.

Writers lock the ``mirror_state`` row first (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` locks the whole database), so
sequence numbers are handed out in commit order and a reader never skips a
change that commits later with a lower number.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, func, or_, select, update

from apexcal.apex.models import Activity
from apexcal.state._sql import chunks, insert_ignore
from apexcal.state.part import StorePart
from apexcal.state.records import MirrorChanges, UpsertResult
from apexcal.state.tables import ActivityRow, MirrorState, table_of

__all__ = ["MirrorPart", "StorePart"]

_A = table_of(ActivityRow)
_M = table_of(MirrorState)


@dataclass(frozen=True, kw_only=True)
class _Locked:
    change_seq: int
    watermark: datetime | None


def _lock_org(conn: Connection, org_id: int) -> _Locked:
    insert_ignore(conn, _M, {"organization_id": org_id, "change_seq": 0})
    row = conn.execute(
        select(_M.c.change_seq, _M.c.watermark)
        .where(_M.c.organization_id == org_id)
        .with_for_update()
    ).one()
    return _Locked(change_seq=row.change_seq, watermark=row.watermark)


def _activity_values(activity: Activity, content_hash: str, seq: int) -> dict[str, Any]:
    return {
        "updated_at": activity.updated_at,
        "deleted": activity.deleted_at is not None,
        "deleted_at": activity.deleted_at,
        "content_hash": content_hash,
        "data": activity.model_dump(mode="json"),
        "assigned_to_user_id": activity.assigned_to_user_id,
        "activity_type": activity.activity_type,
        "start_date": activity.start_date,
        "end_date": activity.end_date,
        "done": activity.done,
        "change_seq": seq,
    }


class MirrorPart(StorePart):
    """Activities, the pull watermark and the change sequence (activity types: :mod:`~apexcal.state.activity_types`)."""

    # --- activities -------------------------------------------------------------

    def upsert_activities(
        self, org_id: int, activities: Iterable[Activity], *, watermark: datetime | None
    ) -> UpsertResult:
        """Store activities whose content hash changed and advance the watermark, atomically.

        Unchanged activities are not written.  An activity stored as deleted is
        revived by an upsert.  The watermark never moves backwards (``None``
        leaves it).  When an id appears twice, its last occurrence counts.
        """
        latest: dict[int, Activity] = {}
        for activity in activities:
            if activity.organization_id != org_id:
                raise ValueError(
                    f"activity {activity.id} belongs to organization {activity.organization_id}, "
                    f"not {org_id}"
                )
            latest.pop(activity.id, None)
            latest[activity.id] = activity
        # Hash before taking the write lock: the lock is held for the SQL only.
        hashes = {activity_id: a.content_hash() for activity_id, a in latest.items()}
        with self._db.write("upsert activities") as conn:
            locked = _lock_org(conn, org_id)
            stored: dict[int, tuple[str, bool]] = {}
            for chunk in chunks(latest):
                rows = conn.execute(
                    select(_A.c.id, _A.c.content_hash, _A.c.deleted).where(
                        _A.c.organization_id == org_id, _A.c.id.in_(chunk)
                    )
                )
                stored.update((r.id, (r.content_hash, r.deleted)) for r in rows)
            seq = locked.change_seq + 1
            inserts: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []
            unchanged = 0
            for activity_id, activity in latest.items():
                content_hash = hashes[activity_id]
                old = stored.get(activity_id)
                if old == (content_hash, activity.deleted_at is not None):
                    unchanged += 1
                    continue
                values = _activity_values(activity, content_hash, seq)
                if old is None:
                    inserts.append({"organization_id": org_id, "id": activity_id, **values})
                else:
                    updates.append(
                        {"k_org": org_id, "k_id": activity_id}
                        | {f"v_{c}": v for c, v in values.items()}
                    )
            if inserts:
                conn.execute(_A.insert(), inserts)
            if updates:
                conn.execute(
                    update(_A)
                    .where(_A.c.organization_id == bindparam("k_org"), _A.c.id == bindparam("k_id"))
                    .values({k[2:]: bindparam(k) for k in updates[0] if k.startswith("v_")}),
                    updates,
                )
            changed = bool(inserts or updates)
            new_mark = locked.watermark
            if watermark is not None and (new_mark is None or watermark > new_mark):
                new_mark = watermark
            if changed or new_mark != locked.watermark:
                conn.execute(
                    update(_M)
                    .where(_M.c.organization_id == org_id)
                    .values(
                        change_seq=seq if changed else locked.change_seq,
                        watermark=new_mark,
                    )
                )
        written = {row["id"] for row in inserts} | {row["k_id"] for row in updates}
        return UpsertResult(
            changed=tuple(i for i in latest if i in written),
            unchanged=unchanged,
            seq=seq if changed else locked.change_seq,
        )

    def mark_deleted(self, org_id: int, ids: Iterable[int], *, at: datetime | None = None) -> int:
        """Flag live activities deleted (they vanished from the API); return how many were."""
        when = at or self._clock()
        wanted = sorted(set(ids))
        if not wanted:
            return 0
        with self._db.write("mark activities deleted") as conn:
            locked = _lock_org(conn, org_id)
            seq = locked.change_seq + 1
            count = 0
            for chunk in chunks(wanted):
                result = conn.execute(
                    update(_A)
                    .where(
                        _A.c.organization_id == org_id,
                        _A.c.id.in_(chunk),
                        _A.c.deleted.is_(False),
                    )
                    .values(deleted=True, deleted_at=when, change_seq=seq)
                )
                count += result.rowcount
            if count:
                conn.execute(
                    update(_M).where(_M.c.organization_id == org_id).values(change_seq=seq)
                )
        return count

    def live_activity_ids(self, org_id: int) -> set[int]:
        """Ids of every activity not flagged deleted (what a reconcile sweep diffs against)."""
        with self._db.read("list live activity ids") as conn:
            rows = conn.execute(
                select(_A.c.id).where(_A.c.organization_id == org_id, _A.c.deleted.is_(False))
            )
            return {r.id for r in rows}

    def activities(self, org_id: int, ids: Iterable[int] | None = None) -> list[Activity]:
        """Live activities, by id order; all of them, or those among ``ids``."""
        base = (
            select(_A.c.data)
            .where(_A.c.organization_id == org_id, _A.c.deleted.is_(False))
            .order_by(_A.c.id)
        )
        with self._db.read("read activities") as conn:
            if ids is None:
                return [Activity.model_validate(r.data) for r in conn.execute(base)]
            found: list[tuple[int, Activity]] = []
            for chunk in chunks(sorted(set(ids))):
                for r in conn.execute(base.add_columns(_A.c.id).where(_A.c.id.in_(chunk))):
                    found.append((r.id, Activity.model_validate(r.data)))
        return [a for _, a in sorted(found, key=lambda pair: pair[0])]

    def iter_activities(self, org_id: int, *, batch: int = 1000) -> Iterator[Activity]:
        """Every live activity by id, read in batches of short transactions (keyset paging)."""
        after = 0
        while True:
            with self._db.read("read activities") as conn:
                rows = conn.execute(
                    select(_A.c.id, _A.c.data)
                    .where(
                        _A.c.organization_id == org_id,
                        _A.c.deleted.is_(False),
                        _A.c.id > after,
                    )
                    .order_by(_A.c.id)
                    .limit(batch)
                ).all()
            for r in rows:
                yield Activity.model_validate(r.data)
            if len(rows) < batch:
                return
            after = rows[-1].id

    def select_activities(
        self,
        org_id: int,
        *,
        assigned_to_user_ids: Iterable[int] | None = None,
        activity_types: Iterable[str] | None = None,
        window: tuple[date, date] | None = None,
        done: bool | None = None,
    ) -> list[Activity]:
        """Live activities matching every given filter, by id.

        ``window`` keeps activities overlapping ``[first, last]`` (inclusive):
        those starting on or before ``last`` and ending (or, with no end date,
        starting) on or after ``first``; activities without a start date never match it.
        """
        query: Select[Any] = (
            select(_A.c.data)
            .where(_A.c.organization_id == org_id, _A.c.deleted.is_(False))
            .order_by(_A.c.id)
        )
        if assigned_to_user_ids is not None:
            query = query.where(_A.c.assigned_to_user_id.in_(sorted(set(assigned_to_user_ids))))
        if activity_types is not None:
            query = query.where(_A.c.activity_type.in_(sorted(set(activity_types))))
        if done is not None:
            query = query.where(_A.c.done.is_(done))
        if window is not None:
            first, last = window
            query = query.where(
                _A.c.start_date <= last,
                or_(
                    _A.c.end_date >= first,
                    and_(_A.c.end_date.is_(None), _A.c.start_date >= first),
                ),
            )
        with self._db.read("select activities") as conn:
            return [Activity.model_validate(r.data) for r in conn.execute(query)]

    def activities_changed_since(self, org_id: int, seq: int) -> MirrorChanges:
        """Activities changed or deleted after mirror sequence ``seq`` (see the module docstring)."""
        changed: list[Activity] = []
        deleted: list[int] = []
        top = seq
        with self._db.read("read mirror changes") as conn:
            rows = conn.execute(
                select(_A.c.id, _A.c.deleted, _A.c.data, _A.c.change_seq)
                .where(_A.c.organization_id == org_id, _A.c.change_seq > seq)
                .order_by(_A.c.id)
            )
            for r in rows:
                top = max(top, r.change_seq)
                if r.deleted:
                    deleted.append(r.id)
                else:
                    changed.append(Activity.model_validate(r.data))
        return MirrorChanges(seq=top, changed=tuple(changed), deleted=tuple(deleted))

    def mirror_seq(self, org_id: int) -> int:
        """The organization's current mirror change sequence (0 before the first change)."""
        with self._db.read("read mirror sequence") as conn:
            value = conn.execute(
                select(_M.c.change_seq).where(_M.c.organization_id == org_id)
            ).scalar_one_or_none()
        return int(value or 0)

    def count_activities(self, org_id: int) -> int:
        """How many live activities the mirror holds."""
        with self._db.read("count activities") as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(_A)
                    .where(_A.c.organization_id == org_id, _A.c.deleted.is_(False))
                ).scalar_one()
            )

    def has_live_activities(self, org_id: int) -> bool:
        """Whether the mirror holds any live activity (one row read, whatever the mirror's size)."""
        with self._db.read("any live activity") as conn:
            row = conn.execute(
                select(_A.c.id)
                .where(_A.c.organization_id == org_id, _A.c.deleted.is_(False))
                .limit(1)
            ).first()
        return row is not None

    # --- watermark and reconcile -------------------------------------------------

    def watermark(self, org_id: int) -> datetime | None:
        """The pull watermark (largest ``updated_at`` stored by a completed pull)."""
        with self._db.read("read watermark") as conn:
            return conn.execute(
                select(_M.c.watermark).where(_M.c.organization_id == org_id)
            ).scalar_one_or_none()

    def reset_watermark(self, org_id: int) -> None:
        """Forget the watermark, so that the next pull lists everything again."""
        with self._db.write("reset watermark") as conn:
            conn.execute(update(_M).where(_M.c.organization_id == org_id).values(watermark=None))

    def last_reconcile(self, org_id: int) -> datetime | None:
        """When the last reconcile sweep of deleted activities completed."""
        with self._db.read("read last reconcile") as conn:
            return conn.execute(
                select(_M.c.last_reconcile_at).where(_M.c.organization_id == org_id)
            ).scalar_one_or_none()

    def set_last_reconcile(self, org_id: int, at: datetime) -> None:
        """Record the completion time of a reconcile sweep."""
        with self._db.write("record reconcile") as conn:
            insert_ignore(conn, _M, {"organization_id": org_id, "change_seq": 0})
            conn.execute(
                update(_M).where(_M.c.organization_id == org_id).values(last_reconcile_at=at)
            )
