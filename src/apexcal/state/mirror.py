"""The mirror of the CRM: activities, activity types, watermark and change sequence.

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

from apexcal.apex.models import Activity, ActivityType
from apexcal.clock import Clock
from apexcal.state._sql import chunks, insert_ignore
from apexcal.state.database import Database
from apexcal.state.records import MirrorChanges, UpsertResult
from apexcal.state.tables import ActivityRow, ActivityTypeRow, MirrorState, table_of

_A = table_of(ActivityRow)
_T = table_of(ActivityTypeRow)
_M = table_of(MirrorState)


@dataclass(frozen=True, kw_only=True)
class _Locked:
    change_seq: int
    watermark: datetime | None


class StorePart:
    """What every part of the store shares: the database, the clock and the organization key.

    ``_org`` scopes targets, records, the journal and feeds (``''``: the
    single organization of a ``--config FILE`` setup); the mirror is keyed by
    the API's ``organization_id`` instead.
    """

    _org: str = ""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock


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
    """Activities, activity types, the pull watermark and the change sequence."""

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

    # --- activity types -----------------------------------------------------------

    def upsert_types(self, org_id: int, types: Iterable[ActivityType]) -> bool:
        """Store the organization's complete type listing; return whether anything changed.

        Types missing from the listing are kept, flagged deleted (with the time
        they vanished), so that activities still naming them resolve.
        """
        now = self._clock()
        listing = {t.id: t for t in types}
        changed = False
        with self._db.write("upsert activity types") as conn:
            stored = {
                r.id: (r.content_hash, r.deleted)
                for r in conn.execute(
                    select(_T.c.id, _T.c.content_hash, _T.c.deleted).where(
                        _T.c.organization_id == org_id
                    )
                )
            }
            for type_id, item in listing.items():
                values = {
                    "key": item.key,
                    "content_hash": item.content_hash(),
                    "data": item.model_dump(mode="json"),
                    "deleted": item.deleted_at is not None,
                    "vanished_at": None,
                }
                old = stored.get(type_id)
                if old == (values["content_hash"], values["deleted"]):
                    continue
                changed = True
                if old is None:
                    conn.execute(_T.insert().values(organization_id=org_id, id=type_id, **values))
                else:
                    conn.execute(
                        update(_T)
                        .where(_T.c.organization_id == org_id, _T.c.id == type_id)
                        .values(**values)
                    )
            gone = [i for i, (_, deleted) in stored.items() if i not in listing and not deleted]
            for chunk in chunks(gone):
                changed = True
                conn.execute(
                    update(_T)
                    .where(_T.c.organization_id == org_id, _T.c.id.in_(chunk))
                    .values(deleted=True, vanished_at=now)
                )
        return changed

    def types(self, org_id: int, *, include_deleted: bool = True) -> dict[str, ActivityType]:
        """Types keyed by ``type_key(name)``; a live type wins over a deleted one of the same key.

        Deleted types are included by default so that old activities still
        resolve their type's name and colour; a type that vanished from the
        listing comes back with ``deleted_at`` set to when it vanished.
        """
        query = select(_T.c.data, _T.c.key, _T.c.deleted, _T.c.vanished_at).where(
            _T.c.organization_id == org_id
        )
        if not include_deleted:
            query = query.where(_T.c.deleted.is_(False))
        with self._db.read("read activity types") as conn:
            rows = conn.execute(query.order_by(_T.c.deleted.desc(), _T.c.id)).all()
        result: dict[str, ActivityType] = {}
        for r in rows:
            item = ActivityType.model_validate(r.data)
            if r.deleted and item.deleted_at is None and r.vanished_at is not None:
                item = item.model_copy(update={"deleted_at": r.vanished_at})
            result[r.key] = item  # live rows come last and win
        return result
