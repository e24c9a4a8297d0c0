"""The plan, merge and apply steps of a cycle (steps 6–8 of :mod:`apexcal.sync.cycle`).

Plan (pure, :func:`~apexcal.sync.plan.plan`) and re-plan only the objects
that had to be read first; merge each update into the server's copy
(:mod:`apexcal.sync.plan_merge`); apply the conditional writes, then resolve
what the server refused: 412s on updates and deletes, creates that found an
object already there (adopted), UIDs another calendar holds
(:mod:`apexcal.sync.apply`, :mod:`apexcal.sync.held`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import structlog

from apexcal.apex.models import Activity
from apexcal.errors import ObjectsUnread
from apexcal.state import ObjectRecord
from apexcal.sync import held
from apexcal.sync.apply import (
    ApplyResult,
    adopt,
    apply_records,
    apply_writes,
    read_refused_creates,
    record_etags,
    replace_broken,
    unadoptable,
    unresolved_conflicts,
)
from apexcal.sync.apply_stream import streamed_creates
from apexcal.sync.cycle_state import CycleState
from apexcal.sync.detect import reread
from apexcal.sync.plan import DeleteGuard, Desired, Plan, RemoteState, plan, replan
from apexcal.sync.plan_merge import Copy, copies_of, merge_updates, to_read
from apexcal.sync.scope import Scope, narrow

log = structlog.get_logger("apexcal.sync.cycle")

# Plan → read what must be read → plan those again: at most this many rounds.
_MAX_ROUNDS = 3


class PlanApplySteps(CycleState):
    """Plan, merge and apply: what the cycle writes, and what it does with the server's refusals."""

    def plan(self, desired: list[Desired], scope: Scope, remote: RemoteState) -> Plan:
        """Plan the scope; read what the plan must see first and plan just those again."""
        the_plan = self._plan(desired, scope.records, remote, scope.total)
        unread: dict[str, tuple[str, str | None]] = {}
        for _ in range(_MAX_ROUNDS):
            if not the_plan.refreshes:
                break
            uids = {r.uid for r in the_plan.refreshes}
            hrefs = [r.href for r in the_plan.refreshes if r.href not in unread]
            remote = reread(self.sink, remote, hrefs, self.owns, unread)
            self.copies.update(copies_of(remote.seen))
            again = self._plan(
                [d for d in desired if d.uid in uids],
                {u: r for u, r in scope.records.items() if u in uids},
                narrow(remote, uids, scope.records),
                scope.total,
            )
            the_plan = replan(the_plan, again, uids)
        self._not_read(unread)
        self._log_conflicts(the_plan.conflicts)  # those a writeback's answer brought
        return the_plan

    def _plan(
        self,
        desired: Iterable[Desired],
        records: Mapping[str, ObjectRecord],
        remote: RemoteState,
        total: int,
    ) -> Plan:
        sync = self.config.sync
        desired = list(desired)
        # Nothing wanted while the CRM holds activities and the filter is unchanged: the
        # CRM moved them away (asked only then; one row read).
        moved_away = (
            not desired and bool(records) and not self.full
            and self.store.has_live_activities(self.org)
        )
        return plan(
            target=self.target.name,
            desired=desired,
            recorded=records.values(),
            remote=remote,
            policy=self.policy,
            writeback=self.completion_writeback,
            recreate_deleted=sync.recreate_deleted,
            guard=DeleteGuard(
                max_share=sync.max_delete_share, force=self.force, crm_moved_away=moved_away
            ),
            total_records=total,
            owns=self.owns,
        )

    # --- merge ------------------------------------------------------------------------------

    def merged(self, the_plan: Plan) -> Plan:
        """The plan with each update merged into the server's copy, reading the copies not read yet.

        An update whose copy the server does not return waits (it is not
        written unmerged): the sync token stays, and the next cycle plans it again.
        """
        missing = to_read(the_plan, self.copies)
        if missing:
            try:
                fetched = self.sink.multiget(missing)
            except ObjectsUnread as exc:
                fetched = exc.found
                self._not_read(exc.unread)
                kept = tuple(u for u in the_plan.updates if u.href not in exc.unread)
                the_plan = dataclasses.replace(the_plan, updates=kept)
            self.copies.update((h, Copy(etag=o.etag or None, data=o.data)) for h, o in fetched.items())
        return merge_updates(the_plan, self.copies)

    # --- apply -----------------------------------------------------------------------------

    def wanted_of(self, activities: Iterable[Activity]) -> list[Desired]:
        """The objects some activities map to, but those another calendar of the account holds."""
        return [d for d in self.desired.of(activities) if d.uid not in self.held.waiting]

    def apply(self, the_plan: Plan, desired: list[Desired], scope: Scope) -> ApplyResult:
        """Record, merge and write, adopt what a create found already there, read back the etags."""
        name = self.target.name
        result = apply_records(the_plan, self.store, name, scope.records)
        the_plan = self.merged(the_plan)
        result = apply_writes(
            the_plan, self.sink, self.store, name, scope.records,
            result=result, should_stop=self.should_stop,
        )
        return self.settle(result, desired, scope)

    def apply_first(self, scope: Scope, remote: RemoteState) -> ApplyResult:
        """A first sync into a calendar holding nothing of ours: map, plan and write as a pipeline.

        Nothing recorded and nothing of ours in the calendar, so the plan can
        only create (:func:`~apexcal.sync.apply_stream.plans_only_creates`):
        the activities are mapped and planned a chunk at a time as the writes
        ask for more (:func:`~apexcal.sync.apply_stream.streamed_creates`),
        each write recorded as it is accepted; then the same steps as
        :meth:`apply` follow the writes.
        """
        mapped: list[Desired] = []
        creates = streamed_creates(
            scope.activities.values(),
            map_chunk=self.wanted_of,
            plan_chunk=lambda desired: self._plan(desired, scope.records, remote, scope.total),
            mapped=mapped,
        )
        result = apply_writes(
            Plan(), self.sink, self.store, self.target.name, scope.records,
            should_stop=self.should_stop, more=creates,
        )
        return self.settle(result, mapped, scope)

    def settle(self, result: ApplyResult, desired: list[Desired], scope: Scope) -> ApplyResult:
        """After the writes: re-read 412s, adopt what creates found there, settle held UIDs, read back etags."""
        if result.conflicted:
            self._resolve_conflicts(result, desired, scope)
        if result.exists:
            self._adopt(result, desired, scope)
        if result.uid_taken:
            self._free_moved(result, scope)
        if result.uid_taken:
            taken, result.uid_taken = result.uid_taken, []
            errors, skipped = held.settle(
                taken, config=self.config, target=self.target, store=self.store,
                held=self.held, activities=scope.activities,
            )
            result.errors.extend(errors)
            result.skipped += skipped
        unresolved_conflicts(result)
        record_etags(self.sink, self.store, result.written)
        if self.fields.active and result.written:
            self.fields.record_pushed((r.uid for r in result.written.values()), {d.uid: d for d in desired})
        return result

    def _resolve_conflicts(self, result: ApplyResult, desired: list[Desired], scope: Scope) -> None:
        """Updates/deletes met 412: re-read those hrefs; plan the ones gone again at once.

        An object deleted in the calendar behind our back (its deletion never
        reported) is re-created now, or forgotten with a tombstone when
        ``recreate_deleted`` is off, so it cannot stay stuck.  One changed by
        someone else is skipped: the sync token is then kept, so the next
        cycle reads the change and plans from it.
        """
        conflicted, result.conflicted = result.conflicted, []
        remote = reread(self.sink, RemoteState(), [a.href for a in conflicted], self.owns, {})
        self.copies.update(copies_of(remote.seen))
        result.conflicted = [a for a in conflicted if a.href not in remote.deleted]
        uids = {a.uid for a in conflicted if a.href in remote.deleted}
        if not uids:
            return
        log.info("sync.conflict_412_gone", objects=len(uids))
        own = {u: r for u, r in scope.records.items() if u in uids}
        gone = dataclasses.replace(remote, seen=(), deleted=frozenset(r.href for r in own.values()))
        again = self.merged(self._plan([d for d in desired if d.uid in uids], own, gone, scope.total))
        name = self.target.name
        recorded = apply_records(again, self.store, name, scope.records)
        result.adopted += recorded.adopted
        result.recorded += recorded.recorded
        apply_writes(
            again, self.sink, self.store, name, scope.records,
            result=result, should_stop=self.should_stop,
        )

    def _free_moved(self, result: ApplyResult, scope: Scope) -> None:
        """Creates refused for a UID another target's calendar keeps though it no longer wants it: free it, create again."""
        retry, result.uid_taken = held.free_moved(
            result.uid_taken, config=self.config, target=self.target, store=self.store,
            sink=self.sink, activities=scope.activities,
        )
        if retry:
            apply_writes(
                Plan(creates=tuple(retry)), self.sink, self.store, self.target.name, scope.records,
                result=result, should_stop=self.should_stop,
            )

    def _adopt(self, result: ApplyResult, desired: list[Desired], scope: Scope) -> None:
        """Creates met 412: read what is there, plan just those again, and adopt or update them."""
        seen = read_refused_creates(result, self.sink, self.owns)
        self.copies.update(copies_of(seen))
        if seen:
            uids = {s.uid for s in seen if s.uid is not None}
            own = {u: r for u, r in scope.records.items() if u in uids}
            again = self._plan(
                [d for d in desired if d.uid in uids], own, RemoteState(seen=tuple(seen)), scope.total
            )
            adopt(self.merged(again), result, self.sink, self.store, self.target.name, scope.records)
        replace_broken(
            result, self.sink, self.store, self.target.name, scope.records,
            should_stop=self.should_stop,
        )
        unadoptable(result, self.sink)
