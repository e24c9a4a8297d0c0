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
   deleted; a delete waits while its activity's writeback is unsent.
   With ``writeback_fields``, calendar edits of start/end, subject and
   location are then decided per field, journaled, sent and re-read the same
   way (:mod:`apexcal.sync.cycle_fields`, :mod:`apexcal.sync.fieldwriteback`);
5. **map** each activity once, in its written-back state
   (:class:`~apexcal.sync.desired.DesiredObjects`);
6. **plan** (pure, :func:`~apexcal.sync.plan.plan`); objects whose etag must be
   known first are read and only they are planned again;
7. **merge** each update into the server's copy of its object (read this
   cycle, or read now), so only what apexcal owns is replaced —
   :mod:`apexcal.sync.plan_merge`;
8. **apply** conditional writes, recording each as the sink accepts it (with
   the etag of the server's answer; those answered without one are read back
   after); creates refused because the object exists are read, planned again
   alone and adopted (:mod:`apexcal.sync.apply`).  A first sync into a
   calendar holding nothing of ours runs steps 5–8 as a pipeline: activities
   are mapped and planned a chunk at a time while the first objects are being
   written (:mod:`apexcal.sync.apply_stream`);
9. **record** the sync token and mirror position — only when nothing is left
   to retry — and the cycle's success or failure.

A no-change cycle costs two API requests (change feed, types) and one CalDAV
request: the collection's PROPFIND, whose ``DAV:sync-token`` equals the
stored one, so no sync-collection REPORT is sent
(:mod:`apexcal.sync.caldav.changes`).

The steps live by concept: :class:`Cycle` here (read, map, record),
:mod:`apexcal.sync.cycle_writeback` (step 4), :mod:`apexcal.sync.cycle_apply`
(steps 6–8) and :mod:`apexcal.sync.cycle_state` (what they share).
"""

from __future__ import annotations

import dataclasses
import time

import structlog

from apexcal.clock import utcnow
from apexcal.config.accounts import shared_account_warnings
from apexcal.sync import held
from apexcal.sync.apply import ApplyResult
from apexcal.sync.apply_stream import plans_only_creates
from apexcal.sync.caldav import default_sink_factory
from apexcal.sync.completions import completions
from apexcal.sync.cycle_apply import PlanApplySteps
from apexcal.sync.cycle_writeback import WriteBackSteps
from apexcal.sync.desired import DesiredObjects, mapping_options, settings_hash
from apexcal.sync.detect import Detected, detect
from apexcal.sync.plan import Desired, Plan
from apexcal.sync.plan_merge import copies_of
from apexcal.sync.pull import PullResult, pull
from apexcal.sync.scope import Scope, scope_of
from apexcal.sync.sink import SinkFactory
from apexcal.sync.summary import CycleSummary

__all__ = ["Cycle", "CycleSummary", "SinkFactory", "default_sink_factory"]

log = structlog.get_logger(__name__)


class Cycle(WriteBackSteps, PlanApplySteps):
    """One cycle of one target over an open sink; :meth:`run` it once (module docstring).

    The write-back steps are :class:`~apexcal.sync.cycle_writeback.WriteBackSteps`,
    the plan, merge and apply steps :class:`~apexcal.sync.cycle_apply.PlanApplySteps`,
    the state they share :class:`~apexcal.sync.cycle_state.CycleState`.
    """

    def run(self) -> CycleSummary:
        """Pull → reconcile → detect → writeback → map → plan → apply → record."""
        started = time.monotonic()
        pulled, detected, scope = self.read()
        remote = self.write_back(scope, detected.remote)
        self.check_stop()
        if not self.fields.active and plans_only_creates(scope.records, remote):
            result = self.apply_first(scope, remote)  # mapped while the first objects are written
        else:
            desired = self.wanted(scope)
            if self.fields.active:
                self.fields.learn(desired, scope.records)
            the_plan = self.wait_for_writebacks(self.plan(desired, scope, remote), scope)
            self.check_stop()
            result = self.apply(the_plan, desired, scope)
        return self.record(pulled, detected, scope, result, time.monotonic() - started)

    def preview(self) -> Plan:
        """The plan :meth:`run` would apply now: its reads, mapping, planning and merging, nothing else.

        Completions are decided by the planner (its ``writebacks``), field
        edits by the two-way edit step (:attr:`field_previews`), neither
        journaled nor sent; nothing is applied or recorded.  Run it on a scratch
        store and a sink that refuses writes (:mod:`apexcal.sync.dry_run`):
        the pull and the held-UID bookkeeping still write to the store given.
        """
        _, detected, scope = self.read()
        self.preview_fields(scope, detected.remote)
        the_plan = self.merged(self.plan(self.wanted(scope), scope, detected.remote))
        # The completions of to-dos leaving the target, which run() sends before
        # planning their delete (the planner gives only those of wanted ones).
        _, leaving = self._completion_sides(scope)
        if leaving:
            writebacks, _ = completions(
                todos={}, recorded=scope.records.values(), remote=detected.remote,
                policy=self.policy, writeback=self.completion_writeback, owns=self.owns, leaving=leaving,
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
        return self.wanted_of(scope.activities.values())

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
