"""A stateful property test of the sync cycle: random CRM edits, calendar edits and faults converge.

The machine drives the real cycle (:func:`~apexcal.sync.run.run_target_cycle`)
over real parts, faults injected only at their edges:

* the CRM is the emulator's app, reached by the real API client through an
  in-process transport, where faults sit: the API down during the writeback
  (a PATCH with no answer) or its answer lost after it was applied;
* the calendar is a :class:`~apexcal.sync.memory_sink.MemorySink` (held to the
  CalDAV servers' behaviour by the Sink contract test), wrapped by
  :class:`FaultySink`: refused writes, 412s (another client edited the object
  just before our write), lost answers (applied, answer lost), and crashes
  right after a write reached the calendar;
* the state is the real SQLite store in a temporary directory.

Rules edit the CRM and the calendar at random and run cycles with faults;
``converge`` then runs fault-free cycles and checks the invariants: nothing
left to do, one object per wanted activity and none for others, completion
equal on both sides and taken from whichever side changed it alone, no
pending writeback, objects of other applications untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
import structlog
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from apexcal.apex.client import ApexClient
from apexcal.apex.retry import RetryPolicy
from apexcal.config import Config, TargetConfig, config_from_dict
from apexcal.emulator import DEMO_ORG_ID, EmulatorState, create_app
from apexcal.emulator.state import DEMO_TOKEN
from apexcal.errors import CalDAVError, CalDAVTransportError, MassDeleteRefused
from apexcal.ical.mapping import href_name, uid_for
from apexcal.ical.remote import read_remote
from apexcal.state import Store
from apexcal.sync.desired import DesiredObjects, mapping_options
from apexcal.sync.memory_sink import MemorySink
from apexcal.sync.plan import ConflictPolicy, Desired
from apexcal.sync.run import run_target_cycle
from apexcal.sync.sink import (
    CalendarInfo,
    FetchedObject,
    Outcome,
    RemoteChanges,
    Write,
    WriteResult,
    run_writes,
    write_one,
)
from apexcal.sync.summary import CycleSummary

SLOTS = st.integers(min_value=1, max_value=4)
PICK = st.integers(min_value=0, max_value=63)
WRITES = st.frozensets(st.integers(0, 5), max_size=2)
NO_RETRY = RetryPolicy(attempts=1, timeout=5.0, wait_initial=0.0, wait_max=0.0, wait_jitter=0.0)
DOMAIN = "crm.example.com"
FOREIGN_HREF = "/cal/other-app.ics"
FOREIGN = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//other//EN\r\nBEGIN:VEVENT\r\n"
    b"UID:not-ours@elsewhere\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260102T090000Z\r\n"
    b"SUMMARY:Someone else's\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


class Crash(Exception):
    """The process died right after a write reached the calendar."""


# --- the edges where faults are injected ------------------------------------------------


class EmulatorTransport(httpx.BaseTransport):
    """The emulator's ASGI app in this process, on a private event loop; faults on PATCH."""

    def __init__(self, state: EmulatorState) -> None:
        self._asgi = httpx.ASGITransport(app=create_app(state))
        self._loop = asyncio.new_event_loop()
        self.patch_fault: str | None = None
        """``"down"``: a PATCH gets no answer; ``"lost"``: it is applied, the answer lost."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH" and self.patch_fault == "down":
            raise httpx.ConnectError("API down", request=request)
        inner = httpx.Request(
            request.method, request.url, headers=request.headers, content=request.read()
        )

        async def send() -> tuple[int, httpx.Headers, bytes]:
            resp = await self._asgi.handle_async_request(inner)
            assert isinstance(resp.stream, httpx.AsyncByteStream)
            raw = b"".join([chunk async for chunk in resp.stream])
            return resp.status_code, resp.headers, raw

        status, headers, raw = self._loop.run_until_complete(send())
        if request.method == "PATCH" and self.patch_fault == "lost":
            raise httpx.ReadError("answer lost", request=request)
        return httpx.Response(status, headers=headers, content=raw)

    def close(self) -> None:
        self._loop.close()


class FaultySink:
    """A :class:`MemorySink` whose writes of the current cycle may meet planned faults."""

    def __init__(self, inner: MemorySink) -> None:
        self.inner = inner
        self.refuse: frozenset[int] = frozenset()
        self.conflict: frozenset[int] = frozenset()
        self.lose: frozenset[int] = frozenset()
        self.crash_at: int | None = None
        self._writes = itertools.count()
        self._lock = threading.Lock()

    def plan_faults(
        self,
        *,
        refuse: frozenset[int] = frozenset(),
        conflict: frozenset[int] = frozenset(),
        lose: frozenset[int] = frozenset(),
        crash_at: int | None = None,
    ) -> None:
        """The faults of the next cycle's writes, by their order in it."""
        self.refuse, self.conflict, self.lose, self.crash_at = refuse, conflict, lose, crash_at
        self._writes = itertools.count()

    def _fault(self, href: str, data: bytes) -> int:
        with self._lock:
            index = next(self._writes)
        if index in self.refuse:
            raise CalDAVError("refused by the server", url=href, status=500)
        if index in self.conflict:
            current = self.inner.multiget([href]).get(href)
            # Another client got there first: its edit of the object (or, for a
            # create, its copy of the same object) makes our conditional write fail.
            base = current.data if current is not None else data
            if base:
                self.inner.put_unconditionally(href, other_client_edit(base))
        return index

    def _after(self, index: int, href: str) -> None:
        if index == self.crash_at:
            raise Crash
        if index in self.lose:
            raise CalDAVTransportError("answer lost", url=href)

    # --- the Sink protocol ---------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.inner.close()

    def href_for(self, name: str) -> str:
        return self.inner.href_for(name)

    def ensure_calendar(self, create: bool = False, *, display_name: str | None = None) -> CalendarInfo:
        return self.inner.ensure_calendar(create, display_name=display_name)

    def changes(self, sync_token: str | None, *, known_hrefs: Any = ()) -> RemoteChanges:
        return self.inner.changes(sync_token, known_hrefs=known_hrefs)

    def listing(self) -> dict[str, str]:
        return self.inner.listing()

    def multiget(self, hrefs: Any) -> dict[str, FetchedObject]:
        return self.inner.multiget(hrefs)

    def create(self, name: str, data: bytes) -> WriteResult:
        href = self.href_for(name)
        index = self._fault(href, data)
        result = self.inner.create(name, data)
        self._after(index, href)
        return result

    def update(self, href: str, data: bytes, etag: str) -> WriteResult:
        index = self._fault(href, data)
        result = self.inner.update(href, data, etag)
        self._after(index, href)
        return result

    def delete(self, href: str, etag: str | None = None) -> WriteResult:
        index = self._fault(href, b"")
        result = self.inner.delete(href, etag)
        self._after(index, href)
        return result

    def apply_many(
        self, writes: Sequence[Write], *, on_result: Any = None, stop: Any = None
    ) -> list[Outcome]:
        return run_writes(
            lambda w: write_one(self, w), writes, concurrency=1, on_result=on_result, stop=stop
        )


def other_client_edit(data: bytes) -> bytes:
    """The object as another calendar app saves it after touching a field of ours."""
    return data.replace(b"END:VCALENDAR", b"X-OTHER-CLIENT:edited\r\nEND:VCALENDAR", 1)


def with_completion(data: bytes, done: bool, at: datetime) -> bytes:
    """A VTODO ticked or unticked in a calendar app (STATUS, COMPLETED, PERCENT-COMPLETE)."""
    lines = [
        line
        for line in data.replace(b"\r\n ", b"").split(b"\r\n")
        if not line.startswith((b"STATUS", b"COMPLETED", b"PERCENT-COMPLETE", b"LAST-MODIFIED"))
    ]
    stamp = at.strftime("%Y%m%dT%H%M%SZ").encode()
    extra = [b"LAST-MODIFIED:" + stamp]
    extra += (
        [b"STATUS:COMPLETED", b"COMPLETED:" + stamp, b"PERCENT-COMPLETE:100"]
        if done
        else [b"STATUS:NEEDS-ACTION"]
    )
    end = lines.index(b"END:VTODO")
    return b"\r\n".join([*lines[:end], *extra, *lines[end:]])


# --- the machine ---------------------------------------------------------------------------


class SyncMachine(RuleBasedStateMachine):
    """CRM, calendar and store evolve randomly under faults; fault-free cycles always converge."""

    policy = ConflictPolicy.CRM_WINS

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="apexcal-stateful-"))
        self.crm = EmulatorState()
        self.crm.add_organization(DEMO_ORG_ID, "Stateful")
        self.transport = EmulatorTransport(self.crm)
        self.client = ApexClient(
            "http://api.test", DEMO_TOKEN, DEMO_ORG_ID, transport=self.transport, retry=NO_RETRY
        )
        self.calendar = MemorySink("/cal/")
        self.calendar.put_unconditionally(FOREIGN_HREF, FOREIGN)
        self.foreign_etag = self.calendar.listing()[FOREIGN_HREF]
        self.sink = FaultySink(self.calendar)
        self.recreate = True
        self.config = self._config()
        self.store = Store.open(self.config.state.url)
        self.ids: dict[int, int] = {}
        self.clock = datetime(2026, 1, 1, tzinfo=UTC)
        # Oracle: who touched completion since the last convergence.
        self.crm_touched: dict[int, bool] = {}
        self.cal_touched: dict[int, bool] = {}
        self.ambiguous: set[int] = set()
        self.left: set[int] = set()
        """Slots reassigned out of the filter right after a calendar-side completion change."""

    def teardown(self) -> None:
        self.store.close()
        self.client.close()
        self.transport.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _config(self) -> Config:
        return config_from_dict(
            {
                "source": {
                    "base_url": "http://api.test",
                    "token": DEMO_TOKEN,
                    "organization_id": DEMO_ORG_ID,
                    "uid_domain": DOMAIN,
                },
                "state": {"url": f"sqlite:///{self.tmp / 'state.db'}"},
                "sync": {
                    "reconcile_interval": "0s",
                    "conflict_policy": str(self.policy),
                    "recreate_deleted": self.recreate,
                },
                "mapping": {"geocoder": "none"},
                "targets": [
                    {
                        "name": "t",
                        "url": "http://calendar.test/cal/",
                        "tasks_as": "todos",
                        "filter": {"assigned_to_user_id": 46},
                    }
                ],
            }
        )

    @property
    def target(self) -> TargetConfig:
        return self.config.targets[0]

    def _tick(self) -> datetime:
        self.clock += timedelta(minutes=1)
        return self.clock

    @initialize(recreate=st.booleans())
    def setup(self, recreate: bool) -> None:
        self.recreate = recreate
        self.config = self._config()

    # --- the CRM -------------------------------------------------------------------------

    @staticmethod
    def is_task(slot: int) -> bool:
        return slot % 3 != 0

    def _live(self) -> list[int]:
        return sorted(self.ids)

    @rule(slot=SLOTS, done=st.booleans())
    def crm_create(self, slot: int, done: bool) -> None:
        if slot in self.ids:
            return
        day = (datetime(2026, 1, 1) + timedelta(days=slot)).date().isoformat()
        record: dict[str, Any] = {
            "organization_id": DEMO_ORG_ID,
            "subject": f"Activity {slot}",
            "activity_type": "task" if self.is_task(slot) else "meeting",
            "assigned_to_user_id": 46,
            "start_date": day,
            "end_date": day,
            "done": done,
        }
        if not self.is_task(slot):
            record.update(start_time="10:00:00", end_time="11:00:00", duration=60)
        self.ids[slot] = int(self.crm.create_activity(record, user_id=46)["id"])
        self.crm_touched[slot] = done

    def _pick(self, pick: int) -> int:
        live = self._live()
        return live[pick % len(live)]

    @precondition(lambda self: self.ids)
    @rule(pick=PICK)
    def crm_edit(self, pick: int) -> None:
        slot = self._pick(pick)
        self.crm.patch_activity(self.ids[slot], {"subject": f"Activity {slot} v{self._tick():%H%M}"})

    @precondition(lambda self: self.ids)
    @rule(pick=PICK)
    def crm_toggle_done(self, pick: int) -> None:
        slot = self._pick(pick)
        done = not self._crm_done(slot)
        self.crm.patch_activity(self.ids[slot], {"done": done})
        self.crm_touched[slot] = done

    @precondition(lambda self: self.ids)
    @rule(pick=PICK)
    def crm_delete(self, pick: int) -> None:
        slot = self._pick(pick)
        self.crm.delete_activity(self.ids.pop(slot))
        self.ambiguous.add(slot)

    @precondition(lambda self: self.ids)
    @rule(pick=PICK)
    def crm_change_filter_membership(self, pick: int) -> None:
        slot = self._pick(pick)
        user = self._raw(slot)["assigned_to_user_id"]
        self.crm.patch_activity(self.ids[slot], {"assigned_to_user_id": 47 if user == 46 else 46})
        self.ambiguous.add(slot)

    def _raw(self, slot: int) -> dict[str, Any]:
        return self.crm.get(self.ids[slot])

    def _crm_done(self, slot: int) -> bool:
        return bool(self._raw(slot)["done"])

    # --- the calendar ------------------------------------------------------------------------

    def _href(self, slot: int) -> str:
        return self.calendar.href_for(href_name(uid_for(DEMO_ORG_ID, self.ids[slot], DOMAIN)))

    def _ours(self) -> dict[int, FetchedObject]:
        """Our objects on the calendar, by slot (at their usual hrefs)."""
        hrefs = {self._href(s): s for s in self.ids}
        return {hrefs[h]: o for h, o in self.calendar.multiget(hrefs).items()}

    def _our_todos(self) -> list[int]:
        return sorted(s for s in self._ours() if self.is_task(s))

    @precondition(lambda self: self._our_todos())
    @rule(pick=PICK)
    def remote_toggle_completion(self, pick: int) -> None:
        todos = self._our_todos()
        self._toggle(todos[pick % len(todos)])

    def _toggle(self, slot: int) -> None:
        obj = self._ours().get(slot)
        if obj is None:
            return
        done = not read_remote(obj.href, obj.data).done
        self.calendar.put_unconditionally(obj.href, with_completion(obj.data, done, self._tick()))
        self.cal_touched[slot] = done

    def _our_assigned_todos(self) -> list[int]:
        return [s for s in self._our_todos() if self._raw(s)["assigned_to_user_id"] == 46]

    @precondition(lambda self: self._our_assigned_todos())
    @rule(
        pick=PICK,
        refuse=WRITES,
        conflict=WRITES,
        lose=WRITES,
        crash_at=st.none() | st.integers(0, 5),
        api=st.sampled_from([None, "down", "lost"]),
    )
    def remote_tick_then_crm_reassign(
        self,
        pick: int,
        refuse: frozenset[int],
        conflict: frozenset[int],
        lose: frozenset[int],
        crash_at: int | None,
        api: str | None,
    ) -> None:
        """From a converged state, a to-do ticked (or unticked) in the calendar just before the CRM reassigns it away.

        A cycle with faults follows, then fault-free ones: the calendar's
        change reaches the CRM and the copy goes, whatever the faults.
        """
        self.converge()
        todos = self._our_assigned_todos()
        if not todos:
            return
        slot = todos[pick % len(todos)]
        self._toggle(slot)
        self.crm.patch_activity(self.ids[slot], {"assigned_to_user_id": 47})
        self.left.add(slot)
        self.cycle_with_faults(refuse, conflict, lose, crash_at, api)
        self.converge()

    @precondition(lambda self: self._ours())
    @rule(pick=PICK)
    def remote_foreign_edit(self, pick: int) -> None:
        ours = self._ours()
        obj = ours[sorted(ours)[pick % len(ours)]]
        self.calendar.put_unconditionally(obj.href, other_client_edit(obj.data))

    @precondition(lambda self: self._ours())
    @rule(pick=PICK)
    def remote_delete(self, pick: int) -> None:
        ours = self._ours()
        slot = sorted(ours)[pick % len(ours)]
        self.calendar.remove(ours[slot].href)
        self.ambiguous.add(slot)

    @rule()
    def remote_expire_sync_token(self) -> None:
        self.calendar.expire_tokens()

    # --- cycles ------------------------------------------------------------------------------

    def _cycle(self) -> CycleSummary:
        """One real cycle; the operator answers a mass-delete refusal with --force."""
        with structlog.testing.capture_logs() as logs:
            try:
                summary = self._run(force=False)
            except MassDeleteRefused:
                summary = self._run(force=True)
            finally:
                self._note_conflicts(logs)
        return summary

    def _run(self, *, force: bool) -> CycleSummary:
        return run_target_cycle(
            self.config, self.target, self.store, client=self.client,
            sink_factory=lambda target, **_: self.sink, force=force, now=self._tick(),
        )

    def _note_conflicts(self, logs: list[dict[str, Any]]) -> None:
        slots = {aid: slot for slot, aid in self.ids.items()}
        for entry in logs:
            if entry["event"] != "sync.completion_conflict":
                continue
            assert entry["crm_done"] != entry["calendar_done"]
            if self.policy is ConflictPolicy.CRM_WINS:
                assert entry["winner"] == "crm"
            elif self.policy is ConflictPolicy.CALENDAR_WINS:
                assert entry["winner"] == "calendar"
            if entry["activity_id"] in slots:
                self.ambiguous.add(slots[entry["activity_id"]])

    @rule(
        refuse=WRITES,
        conflict=WRITES,
        lose=WRITES,
        crash_at=st.none() | st.integers(0, 5),
        api=st.sampled_from([None, "down", "lost"]),
    )
    def cycle_with_faults(
        self,
        refuse: frozenset[int],
        conflict: frozenset[int],
        lose: frozenset[int],
        crash_at: int | None,
        api: str | None,
    ) -> None:
        self.sink.plan_faults(refuse=refuse, conflict=conflict, lose=lose, crash_at=crash_at)
        self.transport.patch_fault = api
        try:
            with contextlib.suppress(Crash):
                self._cycle()
        finally:
            self.sink.plan_faults()
            self.transport.patch_fault = None

    @precondition(lambda self: self._our_todos())
    @rule(pick=PICK)
    def remote_toggles_back_while_a_writeback_is_pending(self, pick: int) -> None:
        """The user ticks a to-do, the API is down during the writeback, the user unticks it."""
        todos = self._our_todos()
        slot = todos[pick % len(todos)]
        self._toggle(slot)
        self.cycle_with_faults(frozenset(), frozenset(), frozenset(), None, "down")
        self._toggle(slot)

    @rule()
    def cycle(self) -> None:
        self._cycle()

    @rule()
    def converge(self) -> None:
        """Fault-free cycles reach a state whose next cycle does nothing, and it is the desired one."""
        wrote_back = False
        for _ in range(4):
            summary = self._cycle()
            assert summary.ok, summary.line()
            if wrote_back:
                assert summary.created + summary.updated == 0, "the cycle after a writeback makes a PUT"
            if not (summary.created or summary.updated or summary.deleted or summary.adopted or summary.written_back):
                break
            wrote_back = bool(summary.written_back)
        else:
            raise AssertionError(f"no convergence: {summary.line()}")
        self._assert_converged()

    def _desired(self) -> dict[str, Desired]:
        options = mapping_options(self.config, self.target)
        mapper = DesiredObjects(
            target=self.target, types=self.store.types(DEMO_ORG_ID), options=options, geocoding=None
        )
        return {d.uid: d for d in mapper.of(self.store.iter_activities(DEMO_ORG_ID))}

    def _assert_converged(self) -> None:
        desired = self._desired()
        records = self.store.records(self.target.name)
        by_uid: dict[str, list[FetchedObject]] = {}
        objects = self.calendar.multiget(self.calendar.listing())
        for obj in objects.values():
            by_uid.setdefault(read_remote(obj.href, obj.data).uid, []).append(obj)
        for uid, d in desired.items():
            objs = by_uid.get(uid, [])
            rec = records.get(uid)
            if rec is not None and rec.remote_deleted:
                assert not self.recreate
                assert objs == []
                continue
            assert len(objs) == 1, f"{uid}: {len(objs)} objects"
            assert rec is not None
            # The CRM's latest version was pushed (a foreign edit survives until it changes).
            assert rec.pushed_hash == d.content_hash, uid
            if d.kind == "VTODO":
                remote_done = read_remote(objs[0].href, objs[0].data).done
                assert remote_done == d.done, f"{uid}: calendar {remote_done}, CRM {d.done}"
        for uid in by_uid:
            if uid.startswith("apexcal-"):
                assert uid in desired, f"{uid} is not desired but still on the server"
        assert self.calendar.listing()[FOREIGN_HREF] == self.foreign_etag
        assert self.store.count_pending_writebacks(self.target.name) == 0
        # The completion went to whichever side changed it alone.
        for side, other in ((self.crm_touched, self.cal_touched), (self.cal_touched, self.crm_touched)):
            for slot, done in side.items():
                if slot in other or slot in self.ambiguous or slot not in self.ids:
                    continue
                uid = uid_for(DEMO_ORG_ID, self.ids[slot], DOMAIN)
                if self.is_task(slot) and (uid in desired or slot in self.left):
                    assert self._crm_done(slot) == done, f"slot {slot}: the last change was lost"
        self.crm_touched.clear()
        self.left.clear()
        self.cal_touched.clear()
        self.ambiguous.clear()

    @invariant()
    def no_uid_twice_on_the_calendar(self) -> None:
        uids = [read_remote(o.href, o.data).uid for o in self.calendar.multiget(self.calendar.listing()).values()]
        assert len(uids) == len(set(uids))


def _machine(policy: ConflictPolicy) -> type[SyncMachine]:
    return type(f"SyncMachine_{policy.name}", (SyncMachine,), {"policy": policy})


SETTINGS = settings(
    max_examples=20,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@contextlib.contextmanager
def machine(policy: ConflictPolicy = ConflictPolicy.CRM_WINS) -> Iterator[SyncMachine]:
    """One machine, torn down after use."""
    m = _machine(policy)()
    try:
        yield m
    finally:
        m.teardown()


class TestCycleConverges:
    """Random CRM edits, calendar edits and faults always converge without ping-pong."""

    def test_crash_after_put_is_not_mistaken_for_a_calendar_change(self) -> None:
        """Our own unrecorded PUT seen after a crash does not write back over a later CRM change."""
        with machine() as m:
            m.setup(recreate=True)
            m.crm_create(slot=1, done=False)
            m.converge()
            m.crm_toggle_done(pick=0)
            m.cycle_with_faults(frozenset(), frozenset(), frozenset(), 0, None)
            m.crm_toggle_done(pick=0)
            m.converge()
            assert m._crm_done(1) is False
            assert read_remote("x", m._ours()[1].data).done is False

    def test_a_failed_write_does_not_make_the_state_read_be_forgotten(self) -> None:
        """After a conflict whose PUT failed, a later CRM change converges with one PUT, no writeback."""
        with machine() as m:
            m.setup(recreate=False)
            m.crm_create(slot=1, done=False)
            m.converge()
            m.remote_toggles_back_while_a_writeback_is_pending(pick=0)
            m.cycle_with_faults(frozenset([0]), frozenset(), frozenset(), None, None)
            expected = not m._crm_done(1)
            m.crm_toggle_done(pick=0)
            m.converge()
            assert m._crm_done(1) is expected

    def test_a_completion_taken_back_before_its_writeback_went_out_never_reaches_the_crm(self) -> None:
        """A to-do ticked while the API is down and unticked before the writeback is sent stays not done."""
        with machine() as m:
            m.setup(recreate=False)
            m.crm_create(slot=1, done=False)
            m.converge()
            m.remote_toggles_back_while_a_writeback_is_pending(pick=0)
            m.cycle_with_faults(frozenset(), frozenset(), frozenset(), None, "down")
            m.converge()
            assert m._crm_done(1) is False
            assert read_remote("x", m._ours()[1].data).done is False

    def test_a_tick_just_before_a_reassignment_reaches_the_crm(self) -> None:
        """Ticked in the calendar, reassigned away in the CRM, the API down at the next cycle: the tick arrives, the copy goes."""
        with machine() as m:
            m.setup(recreate=True)
            m.crm_create(slot=1, done=False)
            m.converge()
            m._toggle(1)
            m.crm.patch_activity(m.ids[1], {"assigned_to_user_id": 47})
            m.cycle_with_faults(frozenset(), frozenset(), frozenset(), None, "down")
            assert 1 in m._ours()  # the copy waits for its writeback
            m.converge()
            assert m._crm_done(1) is True
            assert m._ours() == {}

    def test_first_activity_after_a_cycle_on_an_empty_mirror_is_synced(self) -> None:
        """An activity created after a target's first cycle over an empty mirror reaches the calendar."""
        with machine(ConflictPolicy.NEWEST_WINS) as m:
            m.setup(recreate=False)
            m.converge()
            m.crm_create(slot=1, done=False)
            m.converge()
            assert 1 in m._ours()

    def test_untick_during_a_failed_writeback_never_reaches_the_crm(self) -> None:
        """A tick whose writeback failed, then an untick: the CRM never saw the tick, whatever the policy."""
        for policy, final in (
            (ConflictPolicy.CRM_WINS, False),
            (ConflictPolicy.CALENDAR_WINS, False),
        ):
            with machine(policy) as m:
                m.setup(recreate=True)
                m.crm_create(slot=1, done=False)
                m.converge()
                m.remote_toggles_back_while_a_writeback_is_pending(pick=0)
                m.converge()
                assert m._crm_done(1) is final, policy
                assert read_remote("x", m._ours()[1].data).done is final, policy

    @pytest.mark.timeout(900)  # real cycles over SQLite: slow on a loaded machine
    @pytest.mark.parametrize("policy", list(ConflictPolicy))
    def test_random_histories_converge(self, policy: ConflictPolicy) -> None:
        """Every fault-free run after any history converges and then plans nothing, for each policy."""
        machine = _machine(policy)
        machine.TestCase.settings = SETTINGS
        machine.TestCase().runTest()
