"""The write-back steps of a cycle: completions decided before mapping, journaled and sent to the CRM.

Step 4 of :mod:`apexcal.sync.cycle`; the decision itself is the pure
:func:`~apexcal.sync.completions.completions`, the sending
:mod:`apexcal.sync.writeback`.
"""

from __future__ import annotations

import dataclasses

import structlog

from apexcal.ical.mapping import parse_uid
from apexcal.sync.completions import CrmCompletion, completions, superseded, unread_leaving
from apexcal.sync.cycle_fields import FieldEditSteps
from apexcal.sync.detect import reread
from apexcal.sync.plan import Plan, RemoteState
from apexcal.sync.plan_merge import copies_of
from apexcal.sync.scope import Scope
from apexcal.sync.writeback import journal, send_and_refetch, settle

log = structlog.get_logger("apexcal.sync.cycle")


class WriteBackSteps(FieldEditSteps):
    """Write back: send what earlier cycles left pending, then this cycle's completions, then its field edits."""

    def write_back(self, scope: Scope, remote: RemoteState) -> RemoteState:
        """Send what earlier cycles left pending, then decide, journal and send this cycle's completions.

        Pending entries go first, so the decision sees the CRM as they left it:
        those in doubt (their answer lost) are settled by reading the CRM; an
        entry the calendar has changed again since is dropped unsent (the CRM
        never saw it, so it is no side's change).  The written-back
        activities are re-read by id.

        The to-dos whose activity leaves this target (another user's now,
        retyped, out of the filter) are judged too, before their delete is
        planned; those whose etag is unknown are read first.  Returns the
        remote state to plan with (``remote`` with those reads).
        """
        name = self.target.name
        if self.store.count_pending_writebacks(name):
            self._failed(settle(self.config, self.store, self.client, name, self.now, scope))
            self._drop_superseded(remote)
            if self.store.count_pending_writebacks(name):
                self._send(scope)
        todos, leaving = self._completion_sides(scope)
        unread = unread_leaving(scope.records.values(), leaving, remote) if leaving else []
        if unread:
            remote = reread(self.sink, remote, unread, self.owns)
            self.copies.update(copies_of(remote.seen))
        writebacks, conflicts = completions(
            todos=todos, recorded=scope.records.values(), remote=remote,
            policy=self.policy, writeback=self.completion_writeback, owns=self.owns, leaving=leaving,
        )
        self._log_conflicts(conflicts)
        journal(self.store, name, ((w.activity_id, w.done) for w in writebacks), self.now)
        if writebacks and not self.retry:
            self._send(scope)
        self.write_back_fields(scope, remote)
        return remote

    def _completion_sides(
        self, scope: Scope
    ) -> tuple[dict[int, CrmCompletion], dict[int, CrmCompletion]]:
        """The CRM's completion of the scope's wanted to-dos, and of its other live activities (leaving)."""
        todos: dict[int, CrmCompletion] = {}
        leaving: dict[int, CrmCompletion] = {}
        for a in scope.activities.values():
            crm = CrmCompletion(activity_id=a.id, done=a.done, updated_at=a.updated_at)
            if self.desired.wants(a) and self.desired.is_todo(a):
                todos[a.id] = crm
            elif a.deleted_at is None:  # a CRM deletion wins over a tick
                leaving[a.id] = crm
        return todos, leaving

    def wait_for_writebacks(self, the_plan: Plan, scope: Scope) -> Plan:
        """The plan without the deletes of objects whose activity has a writeback not sent yet.

        A to-do ticked just before its activity left this target stays in the
        calendar until its completion has reached the CRM (a later cycle
        sends the journaled entry, then deletes it); the cycle keeps its sync
        token and mirror position so that cycle plans it again.
        """
        name = self.target.name
        if not the_plan.deletes or not self.store.count_pending_writebacks(name):
            return the_plan
        pending = {e.activity_id for e in self.store.pending_writebacks(name)}
        waiting = {
            d.uid for d in the_plan.deletes
            if (r := scope.records.get(d.uid)) is not None and r.activity_id in pending
        }
        if not waiting:
            return the_plan
        log.info("sync.delete_waits_for_writeback", objects=len(waiting))
        self.retry = True
        return dataclasses.replace(
            the_plan, deletes=tuple(d for d in the_plan.deletes if d.uid not in waiting)
        )

    def _drop_superseded(self, remote: RemoteState) -> None:
        """Drop pending entries the calendar has changed again since (:func:`superseded`)."""
        pending = [(e.id, e.activity_id, e.done) for e in self.store.pending_writebacks(self.target.name)]
        stale = superseded(pending, remote, self._activity_of)
        if stale:
            self.store.supersede_writebacks(stale)
            log.info("sync.writeback_superseded", count=len(stale))

    def _activity_of(self, uid: str) -> int | None:
        ids = parse_uid(uid) if self.owns(uid) else None
        return None if ids is None else ids[1]

    def _send(self, scope: Scope) -> None:
        sent = send_and_refetch(self.config, self.store, self.client, self.target.name, self.now, scope)
        self.written_back += len(sent.sent)
        self._failed(sent)
