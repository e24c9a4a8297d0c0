"""Completion decided before mapping: which calendar-side completions go back to the CRM.

A pure step of the cycle (:mod:`apexcal.sync.cycle`): from the mirror's
``done``/``updated_at`` of the wanted to-dos, the records and the remote state
it gives the writebacks and conflicts the planner would give — so they are
sent, and the mirror updated, before each activity is mapped once.  The rule
itself is :func:`~apexcal.sync.writeback_policy.decide_completion`.

It also judges the recorded to-dos this cycle is about to delete or replace
— their activity *leaving* the target (reassigned to another user, retyped,
out of a changed filter, hidden) or no longer a to-do there — which the
planner never weighs: a tick made in the calendar just before the activity
left is written back before its copy goes, not lost with it.  An activity
deleted in the CRM is not among them: the CRM's deletion wins over a tick
(DESIGN §5, "Ownership": the CRM owns content; completion of an activity
that no longer exists is nobody's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from apexcal.sync.match import cases
from apexcal.sync.plan_model import Conflict, ObjectRecord, RemoteSeen, RemoteState, Writeback
from apexcal.sync.writeback_policy import (
    CompletionDecision,
    CompletionView,
    ConflictPolicy,
    decide_completion,
)


@dataclass(frozen=True, kw_only=True)
class CrmCompletion:
    """The CRM's side of one wanted to-do, as the mirror has it (no mapping needed)."""

    activity_id: int
    done: bool
    updated_at: datetime | None = None


def completions(
    *,
    todos: Mapping[int, CrmCompletion],
    recorded: Iterable[ObjectRecord],
    remote: RemoteState,
    policy: ConflictPolicy = ConflictPolicy.CRM_WINS,
    writeback: bool = True,
    owns: Callable[[str], bool] | None = None,
    leaving: Mapping[int, CrmCompletion] | None = None,
) -> tuple[tuple[Writeback, ...], tuple[Conflict, ...]]:
    """The completions to write back (and conflicts to report), decided before anything is mapped.

    ``todos`` holds the wanted activities that are to-dos on this target.
    For them it gives exactly the writebacks and conflicts :func:`plan`
    gives for the same records and remote state, so the cycle can send them,
    update the mirror, and map each activity once, in its written-back state.
    ``leaving`` holds the other live activities in play: those of its
    activities recorded here as a VTODO are judged by the same rule (the
    planner deletes or replaces them, so this is their only chance).
    """
    records = {r.uid: r for r in recorded}
    crm_of = dict(leaving or {})
    crm_of.update(todos)
    wanted = {
        r.uid
        for r in records.values()
        if r.activity_id in todos or (r.activity_id in crm_of and r.kind == "VTODO")
    }
    writebacks: list[Writeback] = []
    conflicts: list[Conflict] = []
    for case in cases(wanted, records, remote, owns):
        crm = crm_of.get(case.record.activity_id) if case.record is not None else None
        if not case.by_record or case.gone or crm is None or case.uid not in wanted:
            continue
        assert case.record is not None
        decision, _ = decide_for_record(crm.done, crm.updated_at, case.record, case.own, policy, writeback)
        if decision is None:
            continue
        if decision.conflict:
            conflicts.append(conflict_note(case.uid, crm.activity_id, crm.done, decision, policy))
        if decision.writeback:
            writebacks.append(
                Writeback(uid=case.uid, activity_id=crm.activity_id, done=decision.calendar_done)
            )
    return tuple(writebacks), tuple(conflicts)


def unread_leaving(
    recorded: Iterable[ObjectRecord], leaving: Mapping[int, object], remote: RemoteState
) -> list[str]:
    """Hrefs of recorded VTODOs of ``leaving`` activities whose etag is unknown and that were not read.

    Their delete would read them first and go with whatever etag it read, so
    a tick there would be judged by no one: they are read before
    :func:`completions` instead.
    """
    read = {s.href for s in remote.seen} | remote.deleted | remote.listed
    return sorted(
        r.href
        for r in recorded
        if r.activity_id in leaving and r.kind == "VTODO" and r.etag is None and r.href not in read
    )


def decide_for_record(
    crm_done: bool,
    crm_updated_at: datetime | None,
    r: ObjectRecord,
    own: RemoteSeen | None,
    policy: ConflictPolicy,
    writeback: bool,
) -> tuple[CompletionDecision | None, bool]:
    """The completion decision for one recorded to-do, and whether ``pending_done`` was consumed."""
    pushed_done, done_seen = r.pushed_done, r.done_seen
    consumed = False
    if own is not None and r.pending_done is not None and own.done == r.pending_done:
        # Our own unrecorded write (a crash after the PUT): that is what we pushed.
        pushed_done = done_seen = r.pending_done
        consumed = True
    decision = decide_completion(
        CompletionView(
            crm_done=crm_done,
            pushed_done=pushed_done,
            done_seen=done_seen,
            remote_done=own.done if own is not None else None,
            crm_updated_at=crm_updated_at,
            remote_modified=own.modified if own is not None else None,
        ),
        policy=policy,
        writeback_enabled=writeback,
    )
    return decision, consumed


def conflict_note(
    uid: str, activity_id: int, crm_done: bool, decision: CompletionDecision, policy: ConflictPolicy
) -> Conflict:
    return Conflict(
        uid=uid,
        activity_id=activity_id,
        crm_done=crm_done,
        calendar_done=decision.calendar_done,
        policy=policy,
        winner=decision.winner or "crm",
    )


def superseded(
    pending: Iterable[tuple[int, int, bool]], remote: RemoteState, activity_of: Callable[[str], int | None]
) -> list[int]:
    """The pending writebacks ``(entry id, activity id, done)`` the calendar has changed again since.

    Such an entry never reached the CRM, so it is no side's change any more:
    it is dropped unsent and this cycle decides afresh (a to-do ticked while
    the API was down and unticked before the entry went out stays not done).
    """
    done_now: dict[int, bool] = {}
    for seen in remote.seen:
        activity_id = activity_of(seen.uid) if seen.uid is not None else None
        if activity_id is not None and seen.done is not None:
            done_now[activity_id] = seen.done
    return [
        entry_id
        for entry_id, activity_id, done in pending
        if activity_id in done_now and done_now[activity_id] != done
    ]


Settled = Literal["delivered", "overridden", "unsent"]


def settle_in_doubt(
    done: bool, attempted_at: datetime, crm_done: bool | None, crm_updated_at: datetime | None
) -> Settled:
    """What became of a writeback of ``done`` whose answer was lost, from the CRM read since.

    * ``"delivered"`` — the CRM holds ``done``: the attempt was applied (or
      someone set the same); nothing is sent, the records take it as agreed;
    * ``"overridden"`` — the CRM holds the other value and changed after the
      attempt started: the CRM's later change wins (it may well have undone
      our applied write), so the entry is dropped and the CRM's state goes to
      the calendar, as it would had the answer arrived;
    * ``"unsent"`` — the CRM holds the other value and did not change since
      the attempt (it was not applied), or the activity is not listed any
      more: the entry is sent like any pending one.

    The CRM's ``updated_at`` is the API's clock and ``attempted_at`` ours: they
    are compared as they are, so this relies on both clocks agreeing to within
    the time between an attempt and a CRM user's next change.
    """
    if crm_done is None:
        return "unsent"
    if crm_done is done:
        return "delivered"
    if crm_updated_at is not None and crm_updated_at > attempted_at:
        return "overridden"
    return "unsent"
