"""Nothing stuck: objects that used to fail every cycle are settled within one, on real servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from apexcal.ical.remote import read_remote
from tests.chaos.proxy import Fault, FaultKind, FaultProxy, ScriptedFaults, matching
from tests.fixtures.caldav_servers import CalDAVServerHandle
from tests.fixtures.emulator import EmulatorHandle
from tests.integration.test_sync_support import (
    Harness,
    completed_like,
    harness,
    new_activity,
    new_task,
)

__all__ = ["harness"]


@pytest.fixture
def xandikos(emulator: EmulatorHandle, xandikos_server: CalDAVServerHandle, tmp_path: Path) -> Iterator[Harness]:
    """A harness on Xandikos, which takes objects without a UID over HTTP and serves its store as it is."""
    xandikos_server.start()
    h = Harness(emulator=emulator, server=xandikos_server, tmp=tmp_path)
    try:
        yield h
    finally:
        h.close()


_PROBE = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//other//EN\r\nBEGIN:VEVENT\r\nUID:%s\r\n"
    b"DTSTAMP:20260101T000000Z\r\nDTSTART:20260102T100000Z\r\nDTEND:20260102T110000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def _broken_then_state_lost(harness: Harness, breaks: bytes, *, by: str) -> tuple[int, str]:
    """One task synced, then broken by a client at its href (``by``: what replaces ``breaks``), then the records lost."""
    kept = new_activity(harness.emulator, subject="Kept")
    task = new_task(harness.emulator, subject="Broken by a client")
    harness.add_target("a", tasks_as="todos")
    if by.startswith("UID:"):  # before any sync: can a client change the UID at an href here?
        with harness.sink("a") as sink:
            probe = sink.href_for("uid-probe.ics")
        assert harness.put_raw("a", probe, _PROBE % b"uid-probe-1").status_code == 201
        changed = harness.put_raw("a", probe, _PROBE % b"uid-probe-2")
        assert harness.delete_raw("a", probe).status_code in (200, 204)
        if changed.status_code in (403, 409):  # Radicale 409, Cyrus 403: a UID cannot change at an href there
            pytest.skip(f"{harness.server.kind} refuses a changed UID at an href ({changed.status_code})")
    assert harness.cycle("a").created == 2
    obj = harness.object_of("a", task)
    lines = obj.data.splitlines(keepends=True)
    broken = b"".join(by.encode() + ln[len(breaks):] if ln.startswith(breaks) else ln for ln in lines)
    assert broken != obj.data
    assert harness.put_raw("a", obj.href, broken, etag=obj.etag).status_code in (200, 204)
    harness.store.forget_target("a")
    assert kept
    return task, obj.href


class TestBrokenObjectAfterLostState:
    """With the state database lost, one of apexcal's objects broken by a client sits at the href of its UID."""

    def test_foreign_uid_at_our_href_is_replaced_once(self, harness: Harness) -> None:
        """A UID rewritten by a client: the re-creation overwrites it (If-Match), reports the href once, and settles."""
        task, href = _broken_then_state_lost(harness, b"UID:apexcal-", by="UID:copied-apexcal-")

        summary = harness.cycle("a")

        assert summary.ok, summary.errors
        assert (summary.updated, summary.adopted, summary.created) == (1, 1, 0)
        assert [w for w in summary.warnings if href in w and "replaced" in w]
        data = harness.remote("a")[href].data
        assert read_remote(href, data).uid.startswith("apexcal-")
        assert b"SUMMARY:Broken by a client" in data
        assert len(harness.remote_by_uid("a")) == 2
        again = harness.cycle("a")
        assert (again.ok, again.updated, again.created, again.warnings) == (True, 0, 0, ())
        assert harness.count("PUT") == 0
        assert task

    def test_unreadable_object_at_our_href_is_replaced_once(self, xandikos: Harness) -> None:
        """An object without a UID (Xandikos stores it): replaced by the CRM's version, then nothing more to do."""
        _, href = _broken_then_state_lost(xandikos, b"UID:", by="X-NO-UID:")

        summary = xandikos.cycle("a")

        assert summary.ok, summary.errors
        assert summary.updated == 1
        assert [w for w in summary.warnings if href in w and "replaced" in w]
        assert read_remote(href, xandikos.remote("a")[href].data).uid.startswith("apexcal-")
        again = xandikos.cycle("a")
        assert (again.ok, again.updated, again.created, again.warnings) == (True, 0, 0, ())

    def test_a_repair_made_meanwhile_wins(self, xandikos: Harness) -> None:
        """The object repaired (with an edit) between apexcal's read and its overwrite: 412, kept, adopted next cycle."""
        _, href = _broken_then_state_lost(xandikos, b"UID:", by="X-NO-UID:")
        repaired: list[bytes] = []

        def repair(method: str, status: int) -> None:
            if method == "REPORT" and not repaired and xandikos.count("PUT") == 1:
                data = xandikos.remote("a")[href].data.replace(b"X-NO-UID:", b"UID:")
                data = data.replace(b"END:VTODO", b"X-REPAIRED:by hand\r\nEND:VTODO")
                repaired.append(data)
                assert xandikos.put_raw("a", href, data).status_code in (200, 204)

        xandikos.hooks.append(repair)
        first = xandikos.cycle("a")
        xandikos.hooks.clear()

        assert repaired
        assert first.updated == 0
        assert b"X-REPAIRED:by hand" in xandikos.remote("a")[href].data
        second = xandikos.cycle("a")
        assert second.ok, second.errors
        assert b"X-REPAIRED:by hand" in xandikos.remote("a")[href].data
        third = xandikos.cycle("a")
        assert (third.ok, third.updated, third.created) == (True, 0, 0)


# An object of invalid UTF-8, written into Xandikos's store behind its back: it answers 500 to any
# calendar-multiget naming it (and lists it in sync-collection and PROPFIND).
INVALID_UTF8 = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//other//EN\r\nBEGIN:VEVENT\r\nUID:bad-bytes\r\n"
    b"DTSTAMP:20260101T000000Z\r\nDTSTART:20260102T100000Z\r\nSUMMARY:caf\xe9 \xff\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def _complete(harness: Harness, activity_id: int) -> None:
    """The user ticks a task done in the calendar, the way tasks.org writes it."""
    obj = harness.object_of("a", activity_id)
    done = completed_like(obj.data, "tasks.org")
    assert harness.put_raw("a", obj.href, done, obj.etag).status_code in (200, 204)


class TestObjectTheServerCannotRead:
    """Xandikos fails every calendar-multiget that names an object of invalid UTF-8 in its store."""

    def test_the_bad_object_is_isolated_and_the_rest_syncs(self, xandikos: Harness) -> None:
        """Its href is reported, the others are read (a remote completion written back), the token waits for it."""
        tasks = [new_task(xandikos.emulator, subject=f"Task {i}") for i in range(4)]
        url = xandikos.add_target("a", tasks_as="todos")
        assert xandikos.cycle("a").created == 4
        token = xandikos.store.target_state("a").sync_token
        changed_href = xandikos.object_of("a", tasks[2]).href
        _complete(xandikos, tasks[1])
        xandikos.server.seed(url, {"bad-bytes.ics": INVALID_UTF8})
        with xandikos.sink("a") as sink:
            bad = sink.href_for("bad-bytes.ics")
        xandikos.emulator.state.patch_activity(tasks[2], {"subject": "Changed in the CRM"})

        first = xandikos.cycle("a")

        assert first.ok, first.errors
        assert [w for w in first.warnings if w.startswith(f"{bad}: not read")]
        assert xandikos.emulator.state.get(tasks[1])["done"] is True
        with xandikos.sink("a") as sink:  # a read naming the bad object fails as a whole
            assert b"SUMMARY:Changed in the CRM" in sink.multiget([changed_href])[changed_href].data
        assert xandikos.store.target_state("a").sync_token == token  # not past what was not read
        again = xandikos.cycle("a")
        assert (again.ok, again.created, again.updated, again.deleted, again.written_back) == (True, 0, 0, 0, 0)
        assert [w for w in again.warnings if w.startswith(f"{bad}: not read")]
        xandikos.server.seed(url, {"bad-bytes.ics": INVALID_UTF8.replace(b"caf\xe9 \xff", b"repaired")})
        settled = xandikos.cycle("a")
        assert (settled.ok, settled.warnings, settled.created, settled.updated) == (True, (), 0, 0)
        assert xandikos.store.target_state("a").sync_token != token

    def test_one_of_ours_it_cannot_read_is_not_taken_for_deleted(self, xandikos: Harness) -> None:
        """Our object turned unreadable in the store: reported, never re-created beside itself nor forgotten."""
        tasks = [new_task(xandikos.emulator, subject=f"Task {i}") for i in range(3)]
        url = xandikos.add_target("a", tasks_as="todos")
        assert xandikos.cycle("a").created == 3
        victim = xandikos.object_of("a", tasks[0])
        name = victim.href.rsplit("/", 1)[1]
        xandikos.server.seed(url, {name: victim.data.replace(b"SUMMARY:", b"SUMMARY:\xff")})

        summary = xandikos.cycle("a")

        assert summary.ok, summary.errors
        assert (summary.created, summary.deleted) == (0, 0)
        assert [w for w in summary.warnings if w.startswith(f"{victim.href}: not read")]
        assert xandikos.store.records("a")[next(u for u in xandikos.store.records("a") if f"-{tasks[0]}@" in u)].href == victim.href


class TestTransientReadFaults:
    """A 500 on a calendar-multiget that the retry does not meet: the same end as without it."""

    @pytest.mark.parametrize("failing", [(2,), (2, 3)], ids=["whole-read", "whole-read-and-one-half"])
    def test_nothing_is_lost_and_nothing_marked_seen(self, xandikos: Harness, failing: tuple[int, ...]) -> None:
        """Two remote completions; the read of both fails (and then the read of one half): both reach the CRM."""
        tasks = [new_task(xandikos.emulator, subject=f"Task {i}") for i in range(3)]
        url = xandikos.server.make_calendar("a")
        with FaultProxy(upstream=xandikos.server.base_url) as proxy:
            xandikos.add_target("a", url=proxy.rewrite(url), tasks_as="todos")
            assert xandikos.cycle("a").created == 3
            _complete(xandikos, tasks[0])
            _complete(xandikos, tasks[2])
            # REPORT 1 is the sync-collection, 2 the multiget of both changes, 3 its first half.
            proxy.plan = ScriptedFaults(
                rules=[(matching("REPORT"), n, Fault(kind=FaultKind.ERROR, status=500)) for n in failing]
            )
            first = xandikos.cycle("a")
            proxy.plan = None
            assert first.ok, first.errors
            second = xandikos.cycle("a")
            third = xandikos.cycle("a")
        assert proxy.counts()["error"] == len(failing)
        assert [xandikos.emulator.state.get(t)["done"] for t in tasks] == [True, False, True]
        assert second.ok, second.errors
        assert (third.ok, third.written_back, third.updated, third.warnings) == (True, 0, 0, ())
        if len(failing) == 1:  # split and read within the cycle
            assert first.written_back == 2
        else:  # one not read: not seen, its completion carried by the next cycle
            assert (first.written_back, second.written_back) == (1, 1)


def test_lost_state_and_one_of_ours_the_server_cannot_read(xandikos: Harness) -> None:
    """The state lost too: the re-creation meets 412 and the read fails; the CRM's version is put over it (If-Match on the listed etag).

    Xandikos fails that PUT as well (500: it reads the old object first), so
    the object stays an error naming its href, no copy is made beside it,
    and the rest is adopted; once repaired in the store, it is adopted too.
    """
    tasks = [new_task(xandikos.emulator, subject=f"Task {i}") for i in range(3)]
    url = xandikos.add_target("a", tasks_as="todos")
    assert xandikos.cycle("a").created == 3
    victim = xandikos.object_of("a", tasks[0])
    name = victim.href.rsplit("/", 1)[1]
    xandikos.server.seed(url, {name: victim.data.replace(b"SUMMARY:", b"SUMMARY:\xff")})
    xandikos.store.forget_target("a")

    first = xandikos.cycle("a")

    assert (first.adopted, first.created) == (2, 0)
    assert [(e.href, e.kind) for e in first.errors] == [(victim.href, "CalDAVError")]
    assert "PUT answered 500" in first.errors[0].reason
    with xandikos.sink("a") as sink:
        assert len(sink.listing()) == 3
    xandikos.server.seed(url, {name: victim.data})
    second = xandikos.cycle("a")
    assert (second.ok, second.adopted, second.created, second.updated) == (True, 1, 0, 0)
    third = xandikos.cycle("a")
    assert (third.ok, third.created, third.updated, third.warnings) == (True, 0, 0, ())
