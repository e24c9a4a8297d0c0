"""The sync planner: (desired, recorded, remote) → the actions of one cycle.

Pure: no network, disk, database or clock.  The engine gathers what the CRM
wants (:class:`Desired`), what the store says we last wrote and saw
(:class:`ObjectRecord`) and what the server showed this cycle (:class:`RemoteState`),
calls :func:`plan`, then applies the actions and records each one right after
the server accepted it.  Computing the whole list first and applying it after
keeps every decision testable without a server.

Per UID the rules are:

1. **Unchanged costs nothing.**  ``desired.content_hash == recorded.pushed_hash``
   and no remote change for the href → no action.
2. **CRM changes.**  A new activity → :class:`Create` (``If-None-Match: *``); a
   changed one → :class:`Update` with ``If-Match`` (the etag read this cycle, else
   the recorded one; when neither is known → :class:`Refresh`, read it first);
   an activity that left the filter or was deleted → :class:`Delete`.
3. **Remote completion** (VTODO only) is settled by
   :func:`~apexcal.sync.writeback_policy.decide_completion` (read it for the
   exact rule).  A calendar-side change yields :class:`Writeback` and an
   :class:`UpdateRecord` (done_seen),
   and *no* PUT of the stale CRM state.  :func:`completions` makes the same
   decision before anything is mapped: the cycle sends those writebacks,
   updates its mirror from the API, and only then maps and calls :func:`plan`,
   whose desired completion now equals the remote one, so there is nothing
   left to write back and the object is PUT once with the CRM's new
   SEQUENCE/LAST-MODIFIED (the bulk PATCH bumped ``updated_at``).  The records then hold that hash, so **the following cycle
   makes no PUT** (no ping-pong).  Conflicts (both sides changed completion to
   different values) follow the target's policy and are reported as
   :class:`Conflict` notes.
4. **Remote deletion** of a recorded object: a :class:`Tombstone` marks the
   record ``remote_deleted`` (the engine records it before writing) and, when
   ``recreate_deleted`` (default), a :class:`Create` re-creates the object;
   otherwise it is never re-created while the tombstone stays.
   A gone object whose activity is not desired either → :class:`Forget`.
5. **Foreign edits** of fields we own: the CRM wins on its next change (then an
   Update overwrites them); when only the remote etag changed, the record takes
   the new etag (:class:`UpdateRecord`) and nothing is PUT.
6. **Foreign UIDs** are never touched: the engine passes only objects whose
   UID it owns, and ``owns`` (when given) filters again.  An object with our
   UID but no live record (a crash between PUT and record, or a restored
   tombstone) is adopted: :class:`Adopt` when its
   bytes equal the desired ones, else :class:`Update` of it (the CRM wins; there
   is no base to merge against); when the activity is not desired it is deleted.
   Further objects carrying the same UID are duplicates and are deleted.
7. **412** on Update/Delete: the engine re-reads the object and plans again; the
   planner is correct for any combination of record and remote state it is given.

The **mass-delete guard** refuses a plan whose :class:`Delete` actions exceed
``max_share`` of the target's live records once there are ``min_records`` of
them, and any plan that would delete every recorded object (two or more) of a
target whose desired set is empty — an API answering an empty list must never
wipe a calendar — unless ``force``.  The latter rule is off when the engine
knows the empty set is the CRM's word (``DeleteGuard.crm_moved_away``: live
activities in the mirror, an unchanged filter), e.g. the last two activities
of a target's user reassigned to someone else.

**Applying a plan.**  Record-only actions first (:class:`Tombstone`,
:class:`Forget`, :class:`Adopt`, :class:`UpdateRecord`), then the writes in
:attr:`Plan.writes` order, each recorded right after the server accepted it:
after a Create/Update the record holds ``pushed_hash``, ``pushed_done`` and
``done_seen`` = the action's ``done`` (VTODO), no tombstone, and the etag from a
read after the write; after a Delete (or its 404) the record is dropped.
Before sending Updates the engine may record each one's ``done`` as
``pending_done`` (one transaction for the batch; cleared when the write is
recorded or definitely failed, and by any record update): a crash between PUT
and record then cannot make our own write look like a completion changed on
the calendar.  A :class:`Refresh` or a 412 means: read that href (multiget) and pass it in
``RemoteState.seen`` (or ``deleted``) to a later plan.  Writebacks are journaled
with their :class:`UpdateRecord` before being sent.  A write that fails is
simply planned again next cycle from the unchanged record; whatever was read
at a recorded href is recorded (:class:`UpdateRecord`, applied before the
writes) so that a failed write cannot make the planner forget it.

The cycle may plan a subset of UIDs (those whose activity or remote object
changed) to keep a cycle's cost proportional to the change: every UID present
in ``recorded`` or seen remotely is judged, and absence from ``desired`` means
"not wanted"; pass ``total_records`` so the guard weighs the whole target.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from apexcal.errors import MassDeleteRefused
from apexcal.sync.completions import (
    CrmCompletion,
    completions,
    conflict_note,
    decide_for_record,
)
from apexcal.sync.match import cases
from apexcal.sync.plan_model import (
    Adopt,
    Conflict,
    Create,
    Delete,
    DeleteGuard,
    Desired,
    Forget,
    Kind,
    ObjectRecord,
    Plan,
    Refresh,
    RemoteSeen,
    RemoteState,
    Tombstone,
    Update,
    UpdateRecord,
    Write,
    Writeback,
    replan,
)
from apexcal.sync.writeback_policy import CompletionDecision, ConflictPolicy

__all__ = [
    "Adopt",
    "Conflict",
    "ConflictPolicy",
    "Create",
    "CrmCompletion",
    "Delete",
    "DeleteGuard",
    "Desired",
    "Forget",
    "Kind",
    "ObjectRecord",
    "Plan",
    "Refresh",
    "RemoteSeen",
    "RemoteState",
    "Tombstone",
    "Update",
    "UpdateRecord",
    "Write",
    "Writeback",
    "completions",
    "plan",
    "replan",
]


@dataclass(kw_only=True)
class _Builder:
    creates: list[Create] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    adopts: list[Adopt] = field(default_factory=list)
    record_updates: list[UpdateRecord] = field(default_factory=list)
    tombstones: list[Tombstone] = field(default_factory=list)
    forgets: list[Forget] = field(default_factory=list)
    refreshes: list[Refresh] = field(default_factory=list)
    writebacks: list[Writeback] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)

    def build(self) -> Plan:
        return Plan(
            creates=tuple(self.creates),
            updates=tuple(self.updates),
            deletes=tuple(self.deletes),
            adopts=tuple(self.adopts),
            record_updates=tuple(self.record_updates),
            tombstones=tuple(self.tombstones),
            forgets=tuple(self.forgets),
            refreshes=tuple(self.refreshes),
            writebacks=tuple(self.writebacks),
            conflicts=tuple(self.conflicts),
        )

    def put(self, uid: str, desired: Desired, href: str, etag: str | None) -> None:
        """Write the desired bytes over the object at ``href`` (read first when etag unknown)."""
        if etag is None:
            self.refreshes.append(Refresh(uid=uid, href=href))
            return
        self.updates.append(
            Update(
                uid=uid,
                activity_id=desired.activity_id,
                href=href,
                etag=etag,
                data=desired.data,
                content_hash=desired.content_hash,
                kind=desired.kind,
                done=desired.done,
            )
        )

    def create(self, desired: Desired) -> None:
        self.creates.append(
            Create(
                uid=desired.uid,
                activity_id=desired.activity_id,
                href_name=desired.href_name,
                data=desired.data,
                content_hash=desired.content_hash,
                kind=desired.kind,
                done=desired.done,
            )
        )

    def delete(self, uid: str, href: str, etag: str | None) -> None:
        if etag is None:
            self.refreshes.append(Refresh(uid=uid, href=href))
        else:
            self.deletes.append(Delete(uid=uid, href=href, etag=etag))


# --- the planner --------------------------------------------------------------


def plan(
    *,
    target: str,
    desired: Iterable[Desired],
    recorded: Iterable[ObjectRecord],
    remote: RemoteState,
    policy: ConflictPolicy = ConflictPolicy.CRM_WINS,
    writeback: bool = True,
    recreate_deleted: bool = True,
    guard: DeleteGuard | None = None,
    total_records: int | None = None,
    owns: Callable[[str], bool] | None = None,
) -> Plan:
    """Compute the actions that bring the target in line with the CRM (see the module docstring).

    ``owns`` tells whether a UID is ours (e.g. ``parse_uid`` for this
    organization); objects seen with any other UID are never acted on, even if
    the engine passed them.  Raises :class:`~apexcal.errors.MassDeleteRefused`
    when the deletes trip the guard and ``guard.force`` is not set.
    """
    wanted = {d.uid: d for d in desired}
    records = {r.uid: r for r in recorded}
    out = _Builder()
    for case in cases(wanted, records, remote, owns):
        d = wanted.get(case.uid)
        if case.by_record:
            assert case.record is not None
            for dup in case.objs:
                if case.own is None or dup.href != case.own.href:
                    out.delete(case.uid, dup.href, dup.etag)
            _plan_recorded(
                out,
                uid=case.uid,
                d=d,
                r=case.record,
                own=case.own,
                gone=case.gone,
                policy=policy,
                writeback=writeback,
                recreate_deleted=recreate_deleted,
            )
        else:
            _plan_unrecorded(
                out, uid=case.uid, d=d, r=case.record, objs=case.objs,
                recreate_deleted=recreate_deleted,
            )

    result = out.build()
    _check_guard(
        result,
        target=target,
        guard=guard or DeleteGuard(),
        total=(
            total_records
            if total_records is not None
            else sum(1 for r in records.values() if not r.remote_deleted)
        ),
        desired_empty=not wanted,
    )
    return result


def _plan_recorded(
    out: _Builder,
    *,
    uid: str,
    d: Desired | None,
    r: ObjectRecord,
    own: RemoteSeen | None,
    gone: bool,
    policy: ConflictPolicy,
    writeback: bool,
    recreate_deleted: bool,
) -> None:
    """One UID with a live record."""
    if gone:
        if d is None:
            out.forgets.append(Forget(uid=uid))
        else:
            # Recorded first, so a failed re-creation is retried on the next cycle.
            out.tombstones.append(Tombstone(uid=uid))
            if recreate_deleted:
                out.create(d)
        return
    etag = own.etag if own is not None else r.etag
    if d is None:
        out.delete(uid, r.href, etag)
        return
    decision: CompletionDecision | None = None
    consumed = False
    if d.kind == "VTODO":
        decision, consumed = decide_for_record(d.done, d.updated_at, r, own, policy, writeback)
    # What was read is recorded whatever becomes of this cycle's write, so a
    # failed write cannot make us forget the server's state.
    observed = _observed(r, own, consumed=consumed)
    if observed is not None:
        out.record_updates.append(observed)
    if decision is not None and decision.conflict:
        out.conflicts.append(conflict_note(uid, d.activity_id, d.done, decision, policy))
    if decision is not None and decision.writeback:
        out.writebacks.append(
            Writeback(uid=uid, activity_id=d.activity_id, done=decision.calendar_done)
        )
        return
    # The server holding another completion than the CRM's, with nothing to
    # write back, is pushed even when our bytes look unchanged: after a crash
    # between a PUT and its record, pushed_hash is not what the server holds.
    stale = decision is not None and writeback and decision.calendar_done != d.done
    unchanged = r.pushed_hash in (d.content_hash, d.legacy_hash)
    if not unchanged or stale or (decision is not None and decision.conflict):
        out.put(uid, d, r.href, etag)


def _observed(r: ObjectRecord, own: RemoteSeen | None, *, consumed: bool) -> UpdateRecord | None:
    """The record update for what was read at the record's href, if it tells anything new."""
    if own is None:
        return None
    done_seen = own.done if own.done is not None else r.done_seen
    if own.etag == r.etag and done_seen == r.done_seen and not consumed:
        return None
    return UpdateRecord(
        uid=r.uid,
        href=r.href,
        etag=own.etag,
        done_seen=done_seen,
        pushed_done=r.pending_done if consumed else None,
    )


def _plan_unrecorded(
    out: _Builder,
    *,
    uid: str,
    d: Desired | None,
    r: ObjectRecord | None,
    objs: list[RemoteSeen],
    recreate_deleted: bool,
) -> None:
    """One UID without a live record: new, tombstoned, or an object we lost track of."""
    if not objs:
        if r is None:
            if d is not None:
                out.create(d)
        elif d is None:
            out.forgets.append(Forget(uid=uid))
        elif recreate_deleted:
            out.create(d)
        elif not r.remote_deleted:
            out.tombstones.append(Tombstone(uid=uid))
        return
    obj, *dups = objs
    for dup in dups:
        out.delete(uid, dup.href, dup.etag)
    if d is None:
        out.delete(uid, obj.href, obj.etag)
        return
    if obj.content_hash is not None and obj.content_hash == d.content_hash:
        out.adopts.append(
            Adopt(
                uid=uid,
                activity_id=d.activity_id,
                href=obj.href,
                etag=obj.etag,
                content_hash=d.content_hash,
                kind=d.kind,
                done=d.done,
            )
        )
        return
    out.put(uid, d, obj.href, obj.etag)


def _check_guard(
    result: Plan, *, target: str, guard: DeleteGuard, total: int, desired_empty: bool
) -> None:
    """Raise MassDeleteRefused when the plan deletes too much without force."""
    n = len(result.deletes)
    if guard.force or n == 0:
        return
    too_many = total >= guard.min_records and n > guard.max_share * total
    wipe = desired_empty and not guard.crm_moved_away and total >= 2 and n >= total
    if too_many or wipe:
        raise MassDeleteRefused(target, n, total, guard.max_share)
