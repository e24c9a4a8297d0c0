"""The planner's vocabulary: its inputs (desired, recorded, remote) and its actions.

Small frozen records, pure data: the planner (:mod:`apexcal.sync.plan`)
depends on nothing but this module, the store keeps :class:`ObjectRecord`
as it is, and a :class:`~apexcal.sync.sink.Sink` takes the writes
(:class:`Create`, :class:`Update`, :class:`Delete`) as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, TypeVar

from apexcal.sync.writeback_policy import ConflictPolicy

Kind = Literal["VEVENT", "VTODO"]


# --- inputs -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Desired:
    """One object the CRM wants on the target: a mirrored activity matching its filter."""

    uid: str
    activity_id: int
    href_name: str
    content_hash: str
    data: bytes
    kind: Kind
    done: bool
    updated_at: datetime | None = None
    """The activity's ``updated_at``; only ``newest-wins`` looks at it."""
    legacy_hash: str | None = None
    """The same bytes' hash in the form records of earlier versions hold (equal to it = unchanged)."""


TOMBSTONE_KIND = "GONE"
"""``ObjectRecord.kind`` of a tombstone: the object is gone from the server and not re-created."""


@dataclass(frozen=True, kw_only=True)
class ObjectRecord:
    """What we last wrote to, and saw on, a target's server for one UID (the store keeps these).

    ``pushed_hash`` is the hash of the bytes we last PUT, ``pushed_done`` the
    completion those bytes carried, ``done_seen`` the completion last read
    from the server (None: never read, or not a VTODO).  ``kind`` is the
    component written (``VEVENT``/``VTODO``) or :data:`TOMBSTONE_KIND`.  The
    store fills ``updated_at`` from its clock when it is None.
    """

    target: str
    uid: str
    activity_id: int
    href: str
    etag: str | None = None
    pushed_hash: str | None = None
    pushed_done: bool | None = None
    done_seen: bool | None = None
    kind: str = "VEVENT"
    updated_at: datetime | None = None
    pending_done: bool | None = None
    """Completion of an Update sent but not yet recorded (write-ahead, cleared on record).

    After a crash between a PUT and its record, the server shows our own write
    as a change; when its completion equals this, it is taken as ours, not as
    a calendar-side change to write back.  Not stored by every store.
    """

    fields: Mapping[str, str] | None = field(default=None, compare=False)
    """Per editable field, the hash of the value last pushed or agreed (two-way edits).

    None: not known (a record from before two-way edits, or a target without
    them); no calendar edit is then written back until the next push records it.
    """

    @property
    def remote_deleted(self) -> bool:
        """Tombstone: the object is gone from the server (see :class:`Tombstone`)."""
        return self.kind == TOMBSTONE_KIND


@dataclass(frozen=True, kw_only=True)
class RemoteSeen:
    """An object the detection step read on the server this cycle."""

    href: str
    etag: str | None
    uid: str | None
    done: bool | None
    """Completion read from the object (VTODO); None for events or when unreadable."""
    status: str | None = None
    modified: datetime | None = None
    """LAST-MODIFIED (or COMPLETED) of the remote object; only ``newest-wins`` uses it."""
    content_hash: str | None = None
    """sha256 of the bytes read, when known; lets a crashed PUT be adopted without a PUT."""
    data: bytes | None = field(default=None, repr=False, compare=False)
    """The bytes read: the copy an update of this object is merged into (DESIGN §5, "Ownership")."""


@dataclass(frozen=True, kw_only=True)
class RemoteState:
    """What detection found: objects read, hrefs known deleted, and whether it was a full listing.

    With ``full=True`` every object present is in ``seen`` or ``listed`` (hrefs
    whose etag was unchanged and were not read), and a recorded href absent
    from both is deleted.
    """

    seen: tuple[RemoteSeen, ...] = ()
    deleted: frozenset[str] = frozenset()
    full: bool = False
    listed: frozenset[str] = frozenset()


@dataclass(frozen=True, kw_only=True)
class DeleteGuard:
    """The mass-delete guard's settings."""

    max_share: float = 0.5
    min_records: int = 10
    force: bool = False
    crm_moved_away: bool = False
    """The CRM holds live activities and the target's filter and mapping are unchanged.

    An empty desired set is then what the CRM says (every activity of the
    target reassigned, retyped or deleted), not an empty API answer, so the
    rule against wiping a small calendar does not apply; the share rule does.
    """


# --- actions ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Create:
    """PUT a new object with ``If-None-Match: *``; a 412 means it exists: re-read and adopt."""

    uid: str
    activity_id: int
    href_name: str
    data: bytes
    content_hash: str
    kind: Kind
    done: bool


@dataclass(frozen=True, kw_only=True)
class Update:
    """PUT our bytes over an existing object with ``If-Match: etag``; 412 → re-read, re-plan."""

    uid: str
    activity_id: int
    href: str
    etag: str
    data: bytes
    content_hash: str
    kind: Kind
    done: bool


@dataclass(frozen=True, kw_only=True)
class Delete:
    """DELETE an object with ``If-Match: etag``; on success (or 404) drop its record."""

    uid: str
    href: str
    etag: str | None = None
    """Sent as ``If-Match``; the planner always knows it (None: unconditional)."""


@dataclass(frozen=True, kw_only=True)
class Adopt:
    """Record an existing object holding exactly the desired bytes as ours; no write."""

    uid: str
    activity_id: int
    href: str
    etag: str | None
    content_hash: str
    kind: Kind
    done: bool


@dataclass(frozen=True, kw_only=True)
class UpdateRecord:
    """Record what was read on the server (etag, completion); clears ``pending_done``.

    Applied before the writes, so it holds even when this cycle's write fails.
    """

    uid: str
    href: str
    etag: str | None
    done_seen: bool | None
    pushed_done: bool | None = None
    """When not None, the record's ``pushed_done`` becomes this (our own write was seen)."""


@dataclass(frozen=True, kw_only=True)
class Tombstone:
    """Mark the record ``remote_deleted``: the object is gone from the server.

    It is re-created only when ``recreate_deleted`` (a :class:`Create` for the
    same UID then follows in the plan; the tombstone makes a failed re-creation
    be retried).
    """

    uid: str


@dataclass(frozen=True, kw_only=True)
class Forget:
    """Drop a record whose object is gone and is not wanted any more."""

    uid: str


@dataclass(frozen=True, kw_only=True)
class Refresh:
    """Read this href (calendar-multiget) before writing: its etag is unknown."""

    uid: str
    href: str


@dataclass(frozen=True, kw_only=True)
class Writeback:
    """Send a completion seen on the calendar to the CRM (journal, bulk PATCH, mark sent)."""

    uid: str
    activity_id: int
    done: bool


@dataclass(frozen=True, kw_only=True)
class Conflict:
    """A note for the log: both sides changed completion; ``winner`` took it."""

    uid: str
    activity_id: int
    crm_done: bool
    calendar_done: bool
    policy: ConflictPolicy
    winner: str


Write = Create | Update | Delete


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The actions of one cycle, in the order the engine applies them."""

    creates: tuple[Create, ...] = ()
    updates: tuple[Update, ...] = ()
    deletes: tuple[Delete, ...] = ()
    adopts: tuple[Adopt, ...] = ()
    record_updates: tuple[UpdateRecord, ...] = ()
    tombstones: tuple[Tombstone, ...] = ()
    forgets: tuple[Forget, ...] = ()
    refreshes: tuple[Refresh, ...] = ()
    writebacks: tuple[Writeback, ...] = ()
    conflicts: tuple[Conflict, ...] = ()

    @property
    def writes(self) -> tuple[Write, ...]:
        """The actions that write to the server: deletes first, then updates, then creates."""
        return (*self.deletes, *self.updates, *self.creates)

    @property
    def is_empty(self) -> bool:
        """True when the cycle has nothing to write, record, read or send."""
        return not any(self.counts().values())

    def counts(self) -> dict[str, int]:
        """How many actions of each kind (for the cycle summary and logs)."""
        return {
            "create": len(self.creates),
            "update": len(self.updates),
            "delete": len(self.deletes),
            "adopt": len(self.adopts),
            "record": len(self.record_updates),
            "tombstone": len(self.tombstones),
            "forget": len(self.forgets),
            "refresh": len(self.refreshes),
            "writeback": len(self.writebacks),
            "conflict": len(self.conflicts),
        }


class _About(Protocol):
    @property
    def uid(self) -> str: ...


_A = TypeVar("_A", bound=_About)


def replan(first: Plan, again: Plan, uids: Iterable[str]) -> Plan:
    """``first`` with every action about ``uids`` replaced by those of ``again`` (a plan of just them)."""
    redo = set(uids)

    def keep(actions: tuple[_A, ...], more: tuple[_A, ...]) -> tuple[_A, ...]:
        return (*(a for a in actions if a.uid not in redo), *(a for a in more if a.uid in redo))

    return Plan(
        creates=keep(first.creates, again.creates),
        updates=keep(first.updates, again.updates),
        deletes=keep(first.deletes, again.deletes),
        adopts=keep(first.adopts, again.adopts),
        record_updates=keep(first.record_updates, again.record_updates),
        tombstones=keep(first.tombstones, again.tombstones),
        forgets=keep(first.forgets, again.forgets),
        refreshes=keep(first.refreshes, again.refreshes),
        writebacks=keep(first.writebacks, again.writebacks),
        conflicts=keep(first.conflicts, again.conflicts),
    )
