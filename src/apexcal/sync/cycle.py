"""One sync cycle of one target, top to bottom: pull → reconcile → detect → writeback → map → plan → apply → record.

:func:`run_target_cycle` is a self-contained function of (config, target,
store) — no process-global state — so the daemon's scheduler, ``apexcal
sync`` and a worker all run it unchanged (DESIGN §7).  It holds the target's
lock, opens the target's :class:`~apexcal.sync.sink.Sink` and runs one
:class:`Cycle`, whose :meth:`Cycle.run` reads as the steps below.  Each step
commits what it did before the next begins, so a crash anywhere is recovered
by running again (DESIGN §1, §5):

1. **pull** the CRM's changes into the mirror; **reconcile** (the id sweep
   finding deleted activities) when due — :mod:`apexcal.sync.pull`;
2. **open** the calendar (tasks become events when it cannot hold them) and
   **detect** what changed there since the sync token — :mod:`apexcal.sync.detect`;
3. **scope**: what changed in the mirror since the target's last position
   and what changed remotely (everything on the first cycle, or when the
   types, mapping or filter changed) — :mod:`apexcal.sync.scope`;
4. **write back**: entries left pending by earlier cycles are sent first; a
   pure step (:func:`~apexcal.sync.completions.completions`) then decides,
   before anything is mapped, which calendar-side completions go to the CRM;
   they are journaled, sent, marked sent, and re-read by id into the mirror
   (:mod:`apexcal.sync.writeback`).  The to-dos whose activity leaves the
   target are judged too, so a tick is written back before its copy is
   deleted; a delete waits while its activity's writeback is unsent;
5. **map** each activity once, in its written-back state
   (:class:`~apexcal.sync.desired.DesiredObjects`);
6. **plan** (pure, :func:`~apexcal.sync.plan.plan`); objects whose etag must be
   known first are read and only they are planned again;
7. **merge** each update into the server's copy of its object (read this
   cycle, or read now), so only what apexcal owns is replaced —
   :mod:`apexcal.sync.plan_merge`;
8. **apply** conditional writes, recording each as the sink accepts it, then
   read back the etags; creates refused because the object exists are read,
   planned again alone and adopted (:mod:`apexcal.sync.apply`);
9. **record** the sync token and mirror position — only when nothing is left
   to retry — and the cycle's success or failure.

A no-change cycle costs two API requests (change feed, types) and two CalDAV
requests (PROPFIND of the collection, sync-collection REPORT).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

import structlog

from apexcal.apex.client import ApexClient
from apexcal.clock import utcnow
from apexcal.config import Config, TargetConfig
from apexcal.config.accounts import shared_account_warnings
from apexcal.errors import CycleCancelled, ObjectsUnread
from apexcal.ical.mapping import parse_uid
from apexcal.state import ObjectRecord, Store
from apexcal.sync import held
from apexcal.sync.apply import (
    ApplyResult,
    ObjectError,
    adopt,
    apply_records,
    apply_writes,
    read_refused_creates,
    record_etags,
    replace_broken,
    unadoptable,
    unresolved_conflicts,
)
from apexcal.sync.caldav import default_sink_factory
from apexcal.sync.completions import CrmCompletion, completions, superseded, unread_leaving
from apexcal.sync.desired import DesiredObjects, mapping_options, settings_hash
from apexcal.sync.detect import Detected, detect, ownership, reread
from apexcal.sync.plan import (
    Conflict,
    ConflictPolicy,
    DeleteGuard,
    Desired,
    Plan,
    RemoteState,
    plan,
    replan,
)
from apexcal.sync.plan_merge import Copy, copies_of, merge_updates, to_read
from apexcal.sync.pull import PullResult, pull
from apexcal.sync.scope import Scope, narrow, scope_of
from apexcal.sync.sink import Sink, SinkFactory
from apexcal.sync.summary import CycleSummary
from apexcal.sync.writeback import WritebackResult, journal, send_and_refetch, settle

__all__ = ["Cycle", "CycleSummary", "SinkFactory", "default_sink_factory"]

log = structlog.get_logger(__name__)

# Plan → read what must be read → plan those again: at most this many rounds.
_MAX_ROUNDS = 3


class Cycle:
    """One cycle of one target over an open sink; :meth:`run` it once (module docstring)."""

    def __init__(
        self,
        config: Config,
        target: TargetConfig,
        store: Store,
        client: ApexClient,
        sink: Sink,
        *,
        now: datetime,
        force: bool = False,
        should_stop: Callable[[], bool] | None = None,
        cycle_id: str = "",
        pulled: PullResult | None = None,
    ) -> None:
        self.config, self.target, self.store, self.client, self.sink = (
            config, target, store, client, sink,
        )
        self.now, self.force, self.should_stop, self.cycle_id = now, force, should_stop, cycle_id
        self.pulled = pulled
        self.org = config.source.organization_id
        self.state = store.target_state(target.name)
        self.owns = ownership(config)
        self.policy = ConflictPolicy(config.sync.conflict_policy)
        self.errors: list[ObjectError] = []
        self.warnings: list[str] = []
        self.retry = False
        self.unread = False
        """Changed objects the server did not return: the sync token stays where it is."""
        self.written_back = 0
        self.conflicts_logged: set[str] = set()
        self.full = False
        self.settings = ""
        self.desired: DesiredObjects
        self.copies: dict[str, Copy] = {}
        """The server's copies of objects read this cycle, by href: what updates merge into."""
        self.held = held.Held()

    def run(self) -> CycleSummary:
        """Pull → reconcile → detect → writeback → map → plan → apply → record."""
        started = time.monotonic()
        pulled, detected, scope = self.read()
        remote = self.write_back(scope, detected.remote)
        self.check_stop()
        desired = self.wanted(scope)
        the_plan = self.wait_for_writebacks(self.plan(desired, scope, remote), scope)
        self.check_stop()
        result = self.apply(the_plan, desired, scope)
        return self.record(pulled, detected, scope, result, time.monotonic() - started)

    def preview(self) -> Plan:
        """The plan :meth:`run` would apply now: its reads, mapping, planning and merging, nothing else.

        Completions are decided by the planner (its ``writebacks``), not
        journaled or sent; nothing is applied or recorded.  Run it on a scratch
        store and a sink that refuses writes (:mod:`apexcal.sync.dry_run`):
        the pull and the held-UID bookkeeping still write to the store given.
        """
        _, detected, scope = self.read()
        the_plan = self.merged(self.plan(self.wanted(scope), scope, detected.remote))
        # The completions of to-dos leaving the target, which run() sends before
        # planning their delete (the planner gives only those of wanted ones).
        _, leaving = self._completion_sides(scope)
        if leaving:
            writebacks, _ = completions(
                todos={}, recorded=scope.records.values(), remote=detected.remote,
                policy=self.policy, writeback=self.target.writeback, owns=self.owns, leaving=leaving,
            )
            the_plan = dataclasses.replace(the_plan, writebacks=(*the_plan.writebacks, *writebacks))
        return the_plan

    def read(self) -> tuple[PullResult, Detected, Scope]:
        """Pull, open the calendar, detect its changes, and scope the cycle (steps 1–3)."""
        pulled = self.pulled or pull(
            self.config, self.store, self.client, now=self.now, force=self.force
        )
        self.open_calendar(pulled)
        self.check_stop()
        detected = detect(
            self.sink, self.store, self.target.name, self.state.sync_token, uid_filter=self.owns,
            reconcile=self.calendar_reconcile_due(),
        )
        self.copies.update(copies_of(detected.remote.seen))
        self.warnings.extend(f"{href}: unreadable, skipped: {why}" for href, why in detected.unreadable)
        self._not_read({href: (why, None) for href, why in detected.unread})
        self.check_stop()
        scope = scope_of(  # what this cycle plans: everything, or what changed
            self.store, self.target.name, self.org, detected,
            since=None if self.full else self.state.mirror_seq_seen,
        )
        self.hold(scope)
        return pulled, detected, scope

    def wanted(self, scope: Scope) -> list[Desired]:
        """The objects the scope's activities map to, but those another calendar of the account holds."""
        return [d for d in self.desired.of(scope.activities.values()) if d.uid not in self.held.waiting]

    def calendar_reconcile_due(self) -> bool:
        """Whether ``[sync] caldav_reconcile_interval`` has passed since the last calendar reconcile."""
        last = self.state.last_caldav_reconcile_at
        return last is None or self.now - last >= self.config.sync.caldav_reconcile_interval

    def check_stop(self) -> None:
        """Raise :class:`CycleCancelled` when a stop was requested."""
        if self.should_stop is not None and self.should_stop():
            raise CycleCancelled("stop requested")

    # --- open: the calendar, the mapping, whether everything is replanned ----------

    def open_calendar(self, pulled: PullResult) -> None:
        """Ensure the calendar and settle the mapping options (tasks as events when no VTODO)."""
        target = self.target
        info = self.sink.ensure_calendar(create=target.create, display_name=target.name)
        tasks_as = target.tasks_as
        if tasks_as == "todos" and not info.supports_vtodo:
            tasks_as = "events"
            self.warnings.append("calendar cannot hold VTODO: tasks are written as events")
            log.warning("sync.no_vtodo_support", url=info.url)
        options = mapping_options(self.config, target, tasks_as=tasks_as)
        self.settings = settings_hash(options, target)
        previous = (self.state.last_summary or {}).get("settings")
        self.full = self.state.mirror_seq_seen == 0 or pulled.types_changed or previous != self.settings
        self.desired = DesiredObjects.for_target(self.config, target, self.store, options, client=self.client)
        if self.state.mirror_seq_seen == 0:
            for line in shared_account_warnings(self.config, target.name):
                self.warnings.append(line)
                log.warning("sync.shared_account", warning=line)

    def hold(self, scope: Scope) -> None:
        """Keep the UIDs another calendar of the account holds out of the plan, unless released.

        Released ones (their holder is gone) are planned, so they are created
        now; see :mod:`apexcal.sync.held`.
        """
        retry_unknown = self.full or self.calendar_reconcile_due()
        self.held = found = held.load(self.config, self.target, self.store, retry_unknown=retry_unknown)
        if not found.records:
            return
        scope.records = {u: r for u, r in scope.records.items() if not held.is_held(r)}
        ids = {r.activity_id for r in found.records.values()}
        live = {a.id: a for a in self.store.activities(self.org, ids)}
        held.forget_unwanted(found, self.store, self.target.name, live, self.desired)
        held.release_moved(found, self.config, self.target, self.store, live)
        for uid, rec in found.records.items():
            if uid not in found.waiting and rec.activity_id in live:
                scope.activities.setdefault(rec.activity_id, live[rec.activity_id])

    # --- write back: completions decided before mapping --------------------------------

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
            policy=self.policy, writeback=self.target.writeback, owns=self.owns, leaving=leaving,
        )
        self._log_conflicts(conflicts)
        journal(self.store, name, ((w.activity_id, w.done) for w in writebacks), self.now)
        if writebacks and not self.retry:
            self._send(scope)
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

    def _failed(self, result: WritebackResult) -> None:
        if result.error is not None:
            self.retry = True
            self.errors.append(
                ObjectError(uid="", href="", activity_id=None, kind="writeback", reason=str(result.error))
            )

    # --- plan ----------------------------------------------------------------------------

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

    def _log_conflicts(self, conflicts: Iterable[Conflict]) -> None:
        for c in conflicts:
            if c.uid not in self.conflicts_logged:
                self.conflicts_logged.add(c.uid)
                log.info(
                    "sync.completion_conflict", activity_id=c.activity_id, crm_done=c.crm_done,
                    calendar_done=c.calendar_done, policy=str(c.policy), winner=c.winner,
                )

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
            writeback=self.target.writeback,
            recreate_deleted=sync.recreate_deleted,
            guard=DeleteGuard(
                max_share=sync.max_delete_share, force=self.force, crm_moved_away=moved_away
            ),
            total_records=total,
            owns=self.owns,
        )

    def _not_read(self, unread: Mapping[str, tuple[str, str | None]]) -> None:
        """Objects the server did not return: reported; the sync token stays, so they are read again."""
        if unread:
            self.unread = True
            self.warnings.extend(f"{href}: not read, read again next cycle: {why}" for href, (why, _) in unread.items())

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

    def apply(self, the_plan: Plan, desired: list[Desired], scope: Scope) -> ApplyResult:
        """Record, merge and write, adopt what a create found already there, read back the etags."""
        name = self.target.name
        result = apply_records(the_plan, self.store, name, scope.records)
        the_plan = self.merged(the_plan)
        result = apply_writes(
            the_plan, self.sink, self.store, name, scope.records,
            result=result, should_stop=self.should_stop,
        )
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

    # --- record ------------------------------------------------------------------------------

    def record(
        self, pulled: PullResult, detected: Detected, scope: Scope, result: ApplyResult,
        seconds: float,
    ) -> CycleSummary:
        """Store the token and mirror position when nothing is left to retry; the cycle's outcome."""
        store, name, state = self.store, self.target.name, self.state
        errors = [*self.errors, *result.errors]
        if not (self.retry or self.unread or result.retry or result.errors):
            token = detected.token if detected.token is not None or detected.remote.full else state.sync_token
            if token != state.sync_token:
                store.set_sync_token(name, token)
            if detected.remote.full:
                store.set_caldav_reconciled(name, self.now)
            if scope.seq != state.mirror_seq_seen:
                # 0 (an empty mirror) keeps the next cycle a full one: the
                # first activity ever mirrored gets position 1 and must be seen.
                store.set_mirror_seq_seen(name, scope.seq)
        summary = CycleSummary(
            target=name,
            pulled=pulled.changed,
            created=result.created,
            updated=result.updated,
            deleted=result.deleted,
            adopted=result.adopted,
            written_back=self.written_back,
            skipped=result.skipped + self.desired.unmappable,
            errors=tuple(errors),
            seconds=seconds,
            cycle_id=self.cycle_id,
            warnings=(*self.warnings, *result.warnings),
        )
        if summary.ok:
            store.record_success(name, utcnow(), {**summary.as_dict(), "settings": self.settings})
        else:
            store.record_failure(
                name, utcnow(), "object_errors", f"{len(errors)} object(s) failed; {errors[0].reason}"
            )
        return summary
