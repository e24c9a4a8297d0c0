"""Nothing stuck: objects that used to fail every cycle are settled within one, on real servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from apexcal.ical.remote import read_remote
from tests.fixtures.caldav_servers import CalDAVServerHandle
from tests.fixtures.emulator import EmulatorHandle
from tests.integration.test_sync_support import Harness, harness, new_activity, new_task

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


def _broken_then_state_lost(harness: Harness, breaks: bytes, *, by: str) -> tuple[int, str]:
    """One task synced, then broken by a client at its href (``by``: what replaces ``breaks``), then the records lost."""
    kept = new_activity(harness.emulator, subject="Kept")
    task = new_task(harness.emulator, subject="Broken by a client")
    harness.add_target("a", tasks_as="todos")
    assert harness.cycle("a").created == 2
    obj = harness.object_of("a", task)
    lines = obj.data.splitlines(keepends=True)
    broken = b"".join(by.encode() + ln[len(breaks):] if ln.startswith(breaks) else ln for ln in lines)
    assert broken != obj.data
    put = harness.put_raw("a", obj.href, broken, etag=obj.etag)
    if put.status_code in (403, 409):  # Radicale 409, Cyrus 403: a UID cannot change at an href there
        pytest.skip(f"{harness.server.kind} refuses the broken object ({put.status_code})")
    assert put.status_code in (200, 204)
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
