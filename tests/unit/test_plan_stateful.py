"""A stateful property test of the sync planner: random CRM edits, calendar edits and faults converge.

The machine holds a simulated CRM (activities with content versions, done
flags and filter membership), a simulated CalDAV collection (objects by href
with etags, completion, UIDs, a change log for sync tokens) and a simulated
store (records, sync token, writeback journal, hrefs to re-read).  Its
``cycle`` is a small in-memory engine in the real engine's order: detect →
send pending writebacks → plan → write back → plan again → apply → record.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from apexcal.errors import MassDeleteRefused
from apexcal.sync.plan import (
    ConflictPolicy,
    Create,
    Delete,
    DeleteGuard,
    Desired,
    ObjectRecord,
    Plan,
    RemoteSeen,
    RemoteState,
    Update,
    UpdateRecord,
    plan,
)
from apexcal.sync.plan_model import TOMBSTONE_KIND

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
IDS = st.integers(min_value=1, max_value=4)
PICK = st.integers(min_value=0, max_value=63)
GUARD = DeleteGuard(max_share=0.5, min_records=4)


def _ts(tick: int) -> datetime:
    return EPOCH + timedelta(seconds=tick)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _uid(aid: int) -> str:
    return f"apexcal-1-{aid}@example.com"


@dataclass
class Activity:
    version: int
    done: bool
    in_filter: bool
    updated: int

    @staticmethod
    def kind_of(aid: int) -> str:
        return "VEVENT" if aid % 3 == 0 else "VTODO"


@dataclass
class RemoteObject:
    uid: str
    data: bytes
    etag: str
    done: bool | None
    modified: int
    foreign_edit: bool = False


class PreconditionFailed(Exception):
    """The simulated server's 412."""


@dataclass
class Collection:
    """A CalDAV collection with a change log, as sync-collection sees it."""

    objects: dict[str, RemoteObject] = field(default_factory=dict)
    changed_at: dict[str, int] = field(default_factory=dict)
    seq: int = 0
    oldest_valid_token: int = 0
    etags: int = 0

    def _touch(self, href: str) -> None:
        self.seq += 1
        self.changed_at[href] = self.seq

    def store(self, href: str, obj: RemoteObject) -> None:
        self.etags += 1
        self.objects[href] = replace(obj, etag=f'"e{self.etags}"')
        self._touch(href)

    def put(self, href: str, obj: RemoteObject, *, if_match: str | None) -> None:
        current = self.objects.get(href)
        if if_match is None and current is not None:
            raise PreconditionFailed(href)
        if if_match is not None and (current is None or current.etag != if_match):
            raise PreconditionFailed(href)
        self.store(href, obj)

    def delete(self, href: str, *, if_match: str) -> None:
        current = self.objects.get(href)
        if current is None:
            return  # 404: already gone
        if current.etag != if_match:
            raise PreconditionFailed(href)
        self.remove(href)

    def remove(self, href: str) -> None:
        del self.objects[href]
        self._touch(href)


def _seen(href: str, obj: RemoteObject) -> RemoteSeen:
    return RemoteSeen(
        href=href,
        etag=obj.etag,
        uid=obj.uid,
        done=obj.done,
        modified=_ts(obj.modified),
        content_hash=_sha(obj.data),
    )


class Crash(Exception):
    """The process died mid-cycle."""


class SyncMachine(RuleBasedStateMachine):
    """CRM, calendar and store evolve randomly; fault-free cycles always converge."""

    policy = ConflictPolicy.CRM_WINS

    def __init__(self) -> None:
        super().__init__()
        self.tick = 0
        self.crm: dict[int, Activity] = {}
        self.cal = Collection()
        self.records: dict[str, ObjectRecord] = {}
        self.token: int | None = None
        self.journal: dict[int, bool] = {}
        self.reread: set[str] = set()
        self.recreate = True
        # Oracle: who touched completion since the last convergence.
        self.crm_touched: dict[int, bool] = {}
        self.cal_touched: dict[int, bool] = {}
        self.ambiguous: set[int] = set()
        self.foreign_hrefs: dict[str, str] = {}

    def _now(self) -> int:
        self.tick += 1
        return self.tick

    @initialize(recreate=st.booleans())
    def setup(self, recreate: bool) -> None:
        self.recreate = recreate
        # An object of another application in the same collection: never touched.
        self.cal.store(
            "other.ics", RemoteObject(uid="x", data=b"x", etag="", done=False, modified=0)
        )
        self.foreign_hrefs["other.ics"] = self.cal.objects["other.ics"].etag

    # --- the CRM ----------------------------------------------------------------

    @rule(aid=IDS, done=st.booleans())
    def crm_create(self, aid: int, done: bool) -> None:
        if aid not in self.crm:
            self.crm[aid] = Activity(version=0, done=done, in_filter=True, updated=self._now())
            self.crm_touched[aid] = done

    @precondition(lambda self: self.crm)
    @rule(pick=PICK)
    def crm_edit(self, pick: int) -> None:
        aid = sorted(self.crm)[pick % len(self.crm)]
        if (act := self.crm.get(aid)) is not None:
            act.version += 1
            act.updated = self._now()

    @precondition(lambda self: self.crm)
    @rule(pick=PICK)
    def crm_toggle_done(self, pick: int) -> None:
        aid = sorted(self.crm)[pick % len(self.crm)]
        if (act := self.crm.get(aid)) is not None:
            act.done = not act.done
            act.updated = self._now()
            self.crm_touched[aid] = act.done

    @precondition(lambda self: self.crm)
    @rule(pick=PICK)
    def crm_delete(self, pick: int) -> None:
        aid = sorted(self.crm)[pick % len(self.crm)]
        if self.crm.pop(aid, None) is not None:
            self.ambiguous.add(aid)

    @precondition(lambda self: self.crm)
    @rule(pick=PICK)
    def crm_change_filter_membership(self, pick: int) -> None:
        aid = sorted(self.crm)[pick % len(self.crm)]
        if (act := self.crm.get(aid)) is not None:
            act.in_filter = not act.in_filter
            act.updated = self._now()
            self.ambiguous.add(aid)

    # --- the calendar -----------------------------------------------------------

    def _our_aids(self) -> list[int]:
        return sorted(
            int(o.uid.split("-")[2].split("@")[0])
            for o in self.cal.objects.values()
            if o.uid.startswith("apexcal-")
        )

    def _ours(self, aid: int) -> tuple[str, RemoteObject] | None:
        uid = _uid(aid)
        return next(((h, o) for h, o in self.cal.objects.items() if o.uid == uid), None)

    def _our_todos(self) -> list[int]:
        return [a for a in self._our_aids() if Activity.kind_of(a) == "VTODO"]

    @precondition(lambda self: self._our_todos())
    @rule(pick=PICK)
    def remote_toggle_completion(self, pick: int) -> None:
        self._toggle(self._our_todos()[pick % len(self._our_todos())])

    def _toggle(self, aid: int) -> None:
        found = self._ours(aid)
        if found is None or found[1].done is None:
            return
        href, obj = found
        done = not obj.done
        data = obj.data + f"|client done={done}".encode()
        # Another client rewrote the object: its bytes are no longer ours.
        self.cal.store(
            href, replace(obj, data=data, done=done, modified=self._now(), foreign_edit=True)
        )
        self.cal_touched[aid] = done

    @precondition(lambda self: self._our_aids())
    @rule(pick=PICK)
    def remote_foreign_edit(self, pick: int) -> None:
        aid = self._our_aids()[pick % len(self._our_aids())]
        if (found := self._ours(aid)) is not None:
            href, obj = found
            data = obj.data + b"|edited"
            self.cal.store(href, replace(obj, data=data, modified=self._now(), foreign_edit=True))

    @precondition(lambda self: self._our_aids())
    @rule(pick=PICK)
    def remote_delete(self, pick: int) -> None:
        aid = self._our_aids()[pick % len(self._our_aids())]
        if (found := self._ours(aid)) is not None:
            self.cal.remove(found[0])
            self.ambiguous.add(aid)

    @rule()
    def remote_expire_sync_token(self) -> None:
        self.cal.oldest_valid_token = self.cal.seq + 1

    # --- the engine -------------------------------------------------------------

    def _desired(self) -> list[Desired]:
        out = []
        for aid, act in sorted(self.crm.items()):
            if not act.in_filter:
                continue
            uid = _uid(aid)
            data = f"{uid}|v{act.version}|done={act.done}|u{act.updated}".encode()
            out.append(
                Desired(
                    uid=uid,
                    activity_id=aid,
                    href_name=f"{uid}.ics",
                    content_hash=_sha(data),
                    data=data,
                    kind="VTODO" if Activity.kind_of(aid) == "VTODO" else "VEVENT",
                    done=act.done,
                    updated_at=_ts(act.updated),
                )
            )
        return out

    def _detect(self) -> tuple[RemoteState, int]:
        cal = self.cal
        new_token = cal.seq
        ours = cal.objects  # foreign UIDs included: the planner must leave them alone
        if self.token is None or self.token < cal.oldest_valid_token:
            seen = tuple(_seen(h, o) for h, o in sorted(ours.items()))
            return RemoteState(seen=seen, full=True), new_token
        token = self.token
        changed = {h for h, at in cal.changed_at.items() if at > token} | self.reread
        seen = tuple(_seen(h, ours[h]) for h in sorted(changed) if h in ours)
        deleted = frozenset(h for h in changed if h not in cal.objects)
        return RemoteState(seen=seen, deleted=deleted), new_token

    def _send_writebacks(self) -> None:
        for aid, done in sorted(self.journal.items()):
            act = self.crm.get(aid)
            if act is not None and act.done != done:
                act.done = done
                act.updated = self._now()  # the bulk PATCH bumps updated_at
            del self.journal[aid]

    def _plan(self, remote: RemoteState) -> Plan:
        kw = {
            "target": "t",
            "desired": self._desired(),
            "recorded": self.records.values(),
            "remote": remote,
            "policy": self.policy,
            "recreate_deleted": self.recreate,
            "owns": lambda uid: uid.startswith("apexcal-"),
        }
        try:
            return plan(**kw, guard=GUARD)  # type: ignore[arg-type]
        except MassDeleteRefused:
            # The operator reads the refusal and runs again with --force.
            return plan(**kw, guard=replace(GUARD, force=True))  # type: ignore[arg-type]

    def _record_write(self, action: Create | Update, href: str) -> None:
        # The etag comes from a read after the write, never from the PUT response.
        obj = self.cal.objects[href]
        self.records[action.uid] = ObjectRecord(
            target="t",
            uid=action.uid,
            activity_id=action.activity_id,
            href=href,
            etag=obj.etag,
            pushed_hash=action.content_hash,
            done_seen=action.done if action.kind == "VTODO" else None,
            pushed_done=action.done if action.kind == "VTODO" else None,
        )

    def _apply(self, p: Plan, fail: frozenset[int], crash_at: int | None) -> bool:
        """Apply a plan; True when every write went through."""
        clean = True
        for a in p.adopts:
            self.records[a.uid] = ObjectRecord(
                target="t",
                uid=a.uid,
                activity_id=a.activity_id,
                href=a.href,
                etag=a.etag,
                pushed_hash=a.content_hash,
                done_seen=a.done if a.kind == "VTODO" else None,
                pushed_done=a.done if a.kind == "VTODO" else None,
            )
        for u in p.record_updates:
            self._record_observation(u)
        for t in p.tombstones:
            self.records[t.uid] = replace(self.records[t.uid], kind=TOMBSTONE_KIND)
        for f in p.forgets:
            self.records.pop(f.uid, None)
        for r in p.refreshes:
            self.reread.add(r.href)
        # Write-ahead: the completion each Update is about to push (one transaction).
        for w in p.updates:
            if w.uid in self.records:
                self.records[w.uid] = replace(self.records[w.uid], pending_done=w.done)
        for i, w in enumerate(p.writes):
            if i in fail:
                self._clear_pending(w.uid)
                clean = False
                continue
            href = w.href_name if isinstance(w, Create) else w.href
            try:
                if isinstance(w, Delete):
                    self.cal.delete(href, if_match=w.etag)
                else:
                    done = w.done if w.kind == "VTODO" else None
                    obj = RemoteObject(
                        uid=w.uid, data=w.data, etag="", done=done, modified=self._now()
                    )
                    etag = w.etag if isinstance(w, Update) else None
                    self.cal.put(href, obj, if_match=etag)
            except PreconditionFailed:
                self.reread.add(href)
                self._clear_pending(w.uid)
                clean = False
                continue
            if crash_at == i:
                raise Crash
            if isinstance(w, Delete):
                self.records.pop(w.uid, None)
            else:
                self._record_write(w, href)
        return clean

    def _record_observation(self, u: UpdateRecord) -> None:
        old = self.records[u.uid]
        self.records[u.uid] = replace(
            old,
            href=u.href,
            etag=u.etag,
            done_seen=u.done_seen,
            pushed_done=old.pushed_done if u.pushed_done is None else u.pushed_done,
            pending_done=None,
        )

    def _clear_pending(self, uid: str) -> None:
        if uid in self.records:
            self.records[uid] = replace(self.records[uid], pending_done=None)

    def _cycle(
        self,
        *,
        fail: frozenset[int] = frozenset(),
        crash_at: int | None = None,
        wb_fails: bool = False,
    ) -> tuple[Plan, Plan]:
        """One cycle; returns (first plan, applied plan)."""
        remote, new_token = self._detect()
        self._send_writebacks()
        first = self._plan(remote)
        self._check_conflicts(first, remote)
        for kind, n in first.counts().items():
            if n and currently_in_test_context():
                event(f"plan has {kind}")  # --hypothesis-show-statistics shows coverage
        applied = first
        if first.writebacks:
            for wb in first.writebacks:
                self.journal[wb.activity_id] = wb.done
            for u in first.record_updates:
                self._record_observation(u)
            if wb_fails:
                raise Crash
            self._send_writebacks()
            applied = self._plan(remote)
            written = {w.uid for w in first.writebacks}
            again = {w.uid for w in applied.writebacks} | {c.uid for c in applied.conflicts}
            assert not written & again, "the plan after the writeback still disagrees"
            assert not applied.writebacks
            self._check_conflicts(applied, remote)
        if self._apply(applied, fail, crash_at):
            # Like the engine: the token moves only when the cycle had no failed write,
            # so whatever the failed writes were about is reported again.
            self.token = new_token
            self.reread -= {s.href for s in remote.seen} | remote.deleted
        return first, applied

    def _check_conflicts(self, p: Plan, remote: RemoteState) -> None:
        modified = {s.uid: s.modified for s in remote.seen}
        writebacks = {w.uid: w for w in p.writebacks}
        updates = {u.uid: u for u in p.updates}
        for c in p.conflicts:
            assert c.crm_done != c.calendar_done
            if self.policy is ConflictPolicy.CRM_WINS:
                assert c.winner == "crm"
            elif self.policy is ConflictPolicy.CALENDAR_WINS:
                assert c.winner == "calendar"
            else:
                cal_at = modified[c.uid]
                crm_at = _ts(self.crm[c.activity_id].updated)
                assert c.winner == ("calendar" if cal_at is not None and cal_at > crm_at else "crm")
            if c.winner == "calendar":
                assert writebacks[c.uid].done == c.calendar_done
            else:
                assert c.uid not in writebacks
                if c.uid in updates:
                    assert updates[c.uid].done == c.crm_done
            self.ambiguous.add(c.activity_id)

    @rule(
        fail=st.frozensets(st.integers(0, 6), max_size=3),
        crash_at=st.none() | st.integers(0, 6),
        wb_fails=st.booleans(),
    )
    def cycle_with_faults(self, fail: frozenset[int], crash_at: int | None, wb_fails: bool) -> None:
        with contextlib.suppress(Crash):
            self._cycle(fail=fail, crash_at=crash_at, wb_fails=wb_fails)

    @precondition(lambda self: self._our_todos())
    @rule(pick=PICK)
    def remote_toggles_back_while_a_writeback_is_pending(self, pick: int) -> None:
        """The user ticks a to-do, the API is down during the writeback, the user unticks it."""
        aid = self._our_todos()[pick % len(self._our_todos())]
        self._toggle(aid)
        with contextlib.suppress(Crash):
            self._cycle(wb_fails=True)
        self._toggle(aid)

    @rule()
    def cycle(self) -> None:
        self._cycle()

    @rule()
    def converge(self) -> None:
        """Fault-free cycles reach a state whose next cycle plans nothing, and it is the desired one."""
        wrote_back = False
        for _ in range(4):
            first, applied = self._cycle()
            if wrote_back:
                assert not applied.writes, "the cycle after a writeback makes a PUT"
            if applied.is_empty:
                break
            wrote_back = bool(first.writebacks)
        else:
            raise AssertionError(f"no convergence: {applied.counts()}")
        self._assert_converged()

    def _assert_converged(self) -> None:
        desired = {d.uid: d for d in self._desired()}
        by_uid: dict[str, list[RemoteObject]] = {}
        for obj in self.cal.objects.values():
            by_uid.setdefault(obj.uid, []).append(obj)
        for uid, d in desired.items():
            objs = by_uid.get(uid, [])
            rec = self.records.get(uid)
            if rec is not None and rec.remote_deleted:
                assert not self.recreate
                assert objs == []
                continue
            assert len(objs) == 1, f"{uid}: {len(objs)} objects"
            obj = objs[0]
            if obj.data != d.data:
                # Only a foreign edit of fields we own survives, until the CRM changes.
                assert obj.foreign_edit, uid
                assert rec is not None
                assert rec.pushed_hash == d.content_hash
            if d.kind == "VTODO":
                assert obj.done == d.done, f"{uid}: calendar {obj.done}, CRM {d.done}"
        for uid in by_uid:
            if uid.startswith("apexcal-"):
                assert uid in desired, f"{uid} is not desired but still on the server"
        for href, etag in self.foreign_hrefs.items():
            assert self.cal.objects[href].etag == etag
        assert not self.journal
        # The completion went to whichever side changed it alone.
        for side, other in (
            (self.crm_touched, self.cal_touched),
            (self.cal_touched, self.crm_touched),
        ):
            for aid, done in side.items():
                if aid in other or aid in self.ambiguous or aid not in self.crm:
                    continue
                if Activity.kind_of(aid) == "VTODO" and _uid(aid) in desired:
                    assert self.crm[aid].done == done, f"activity {aid}: the last change was lost"
        self.crm_touched.clear()
        self.cal_touched.clear()
        self.ambiguous.clear()

    @invariant()
    def records_point_at_our_uids(self) -> None:
        for uid, rec in self.records.items():
            assert rec.uid == uid


def _machine(policy: ConflictPolicy) -> type[SyncMachine]:
    return type(f"SyncMachine_{policy.name}", (SyncMachine,), {"policy": policy})


SETTINGS = settings(
    max_examples=250,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class TestPlannerConverges:
    """Random CRM edits, calendar edits and faults always converge without ping-pong."""

    def test_crash_after_put_is_not_mistaken_for_a_calendar_change(self) -> None:
        """Our own unrecorded PUT seen after a crash does not write back over a later CRM change."""
        m = SyncMachine()
        m.setup(recreate=True)
        m.crm_create(aid=1, done=False)
        m.converge()
        m.crm_toggle_done(pick=0)
        m.cycle_with_faults(crash_at=0, fail=frozenset(), wb_fails=False)
        m.crm_toggle_done(pick=0)
        m.converge()
        assert m.crm[1].done is False
        assert m.cal.objects[f"{_uid(1)}.ics"].done is False

    def test_a_failed_write_does_not_make_the_state_read_be_forgotten(self) -> None:
        """After a conflict whose PUT failed, a later CRM change converges with one PUT, no writeback."""
        m = SyncMachine()
        m.setup(recreate=False)
        m.crm_create(aid=1, done=False)
        m.converge()
        m.remote_toggles_back_while_a_writeback_is_pending(pick=0)
        m.cycle_with_faults(crash_at=None, fail=frozenset([0]), wb_fails=False)
        m.crm_toggle_done(pick=0)
        m.converge()
        assert m.crm[1].done is False

    def test_untick_during_a_failed_writeback_is_settled_by_the_policy(self) -> None:
        """A tick whose writeback failed, then an untick, ends as the policy says."""
        for policy, final in (
            (ConflictPolicy.CRM_WINS, True),
            (ConflictPolicy.CALENDAR_WINS, False),
        ):
            m = _machine(policy)()
            m.setup(recreate=True)
            m.crm_create(aid=1, done=False)
            m.converge()
            m.remote_toggles_back_while_a_writeback_is_pending(pick=0)
            m.converge()
            assert m.crm[1].done is final, policy
            assert m.cal.objects[f"{_uid(1)}.ics"].done is final, policy

    @pytest.mark.parametrize("policy", list(ConflictPolicy))
    def test_random_histories_converge(self, policy: ConflictPolicy) -> None:
        """Every fault-free run after any history converges and then plans nothing, for each policy."""
        machine = _machine(policy)
        machine.TestCase.settings = SETTINGS
        machine.TestCase().runTest()
