"""Bad input in a real cycle: malformed CRM records and calendar objects are reported and skipped, nothing else is lost."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from apexcal.errors import RemoteParseError
from apexcal.ical.remote import read_remote
from tests.fixtures.caldav_servers import CalDAVServerHandle
from tests.fixtures.emulator import EmulatorHandle
from tests.integration.test_sync_support import Harness, new_activity, new_task

_EVENT = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//other//EN\r\nBEGIN:VEVENT\r\nUID:%s\r\n"
    b"DTSTAMP:20260101T000000Z\r\nDTSTART:20260102T100000Z\r\nSUMMARY:theirs\r\nEND:VEVENT\r\n"
    b"END:VCALENDAR\r\n"
)
_TWO = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:%s\r\nDTSTAMP:20260101T000000Z\r\n"
    b"DTSTART:20260102T100000Z\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:%s\r\nDTSTAMP:20260101T000000Z\r\n"
    b"DTSTART:20260103T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)
# Member name → body, as another client PUTs it (Xandikos stores each), and whether apexcal reports it.
PUT_BODIES: dict[str, tuple[bytes, bool]] = {
    "no-uid.ics": (_EVENT.replace(b"UID:%s\r\n", b""), True),
    "two-same-uid.ics": (_TWO % (b"two-same", b"two-same"), True),
    "two-uids.ics": (_TWO % (b"two-a", b"two-b"), True),
    "no-components.ics": (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nEND:VCALENDAR\r\n", True),
    # Readable enough to be someone else's: left alone without a word.
    "bad-date.ics": (_EVENT.replace(b"DTSTART:20260102T100000Z", b"DTSTART:2026-13-45") % b"bad-date", False),
    "bad-tzid.ics": (_EVENT.replace(b"DTSTART:", b"DTSTART;TZID=Nowhere/City:").replace(b"100000Z", b"100000") % b"bad-tzid", False),
}
# What Xandikos refuses over HTTP but serves when it finds it in its store.
STORED_BODIES: dict[str, bytes] = {
    "garbage.ics": b"this is not a calendar at all",
    "empty.ics": b"",
    "no-end.ics": b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:no-end\r\nDTSTART:20260102T100000Z\r\n",
}
# Someone else's 1 MB object: read, not ours, left alone (10 MB bodies: tests/unit/test_bad_remote.py).
BIG = _EVENT.replace(b"SUMMARY:theirs", b"DESCRIPTION:" + b"x" * 1_000_000) % b"big"


def _of(objects: dict[str, bytes], activity_id: int) -> str:
    """The href of the object of ``activity_id`` among readable objects."""
    for href, data in objects.items():
        try:
            if f"-{activity_id}@" in read_remote(href, data).uid:
                return href
        except RemoteParseError:
            continue
    raise KeyError(activity_id)


def _sync(config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APEXCAL_")}
    return subprocess.run(
        [sys.executable, "-m", "apexcal", "sync", "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )


@pytest.fixture
def harness(emulator: EmulatorHandle, xandikos_server: CalDAVServerHandle, tmp_path: Path) -> Iterator[Harness]:
    """A harness on the emulator and Xandikos, which stores most malformed objects it is sent."""
    xandikos_server.start()
    h = Harness(emulator=emulator, server=xandikos_server, tmp=tmp_path)
    try:
        yield h
    finally:
        h.close()


class TestMalformedObjectsOnTheServer:
    """``apexcal sync`` over a calendar holding malformed objects beside apexcal's."""

    def test_malformed_objects_are_reported_by_href_and_the_rest_syncs(self, harness: Harness) -> None:
        """Each unreadable object is named in the summary and left alone; one of ours broken by a client is kept until the CRM changes it."""
        new_activity(harness.emulator, subject="Kept")
        changed = new_task(harness.emulator, subject="Old subject")
        broken = new_task(harness.emulator, subject="Broken by a client")
        renamed = new_activity(harness.emulator, subject="Given another UID by a client")
        url = harness.add_target("a", tasks_as="todos")
        assert harness.cycle("a").created == 4
        ours = {h: o.data for h, o in harness.remote("a").items()}
        broken_href = _of(ours, broken)
        renamed_href = _of(ours, renamed)
        other_uid = ours[renamed_href].replace(b"UID:apexcal-", b"UID:copied-apexcal-")
        assert harness.put_raw("a", renamed_href, other_uid).status_code in (200, 204)
        with harness.sink("a") as sink:
            hrefs = {name: sink.href_for(name) for name in PUT_BODIES}
        for name, (body, _) in PUT_BODIES.items():
            assert harness.put_raw("a", hrefs[name], body).status_code in (201, 204), name
        # A client drops the UID of one of ours (Xandikos takes that over HTTP, and can replace it later).
        without_uid = b"".join(ln for ln in ours[broken_href].splitlines(keepends=True) if not ln.startswith(b"UID:"))
        assert harness.put_raw("a", broken_href, without_uid).status_code in (200, 204)
        harness.server.seed(url, {**STORED_BODIES, "one-megabyte.ics": BIG})
        harness.emulator.state.patch_activity(changed, {"subject": "New subject"})
        before = {h: o.data for h, o in harness.remote("a").items()}

        run = _sync(harness.config_file())

        assert run.returncode == 0, run.stdout + run.stderr
        assert "Traceback" not in run.stderr
        (line,) = [ln for ln in run.stdout.splitlines() if ln.startswith("a: ")]
        assert "a: ok" in line
        assert "updated=1" in line
        assert "deleted=0" in line
        assert "unreadable, skipped" in line
        reported = [n for n, (_, said) in PUT_BODIES.items() if said]
        reported += [*STORED_BODIES, broken_href.rsplit("/", 1)[1], renamed_href.rsplit("/", 1)[1]]
        after = {h: o.data for h, o in harness.remote("a").items()}
        changed_href = _of(after, changed)
        assert b"SUMMARY:New subject" in after[changed_href]
        assert {h: d for h, d in after.items() if h != changed_href} == {
            h: d for h, d in before.items() if h != changed_href
        }
        with capture_logs() as logs:
            again = harness.cycle("a")
        assert (again.created, again.updated, again.deleted) == (0, 0, 0)
        assert again.ok
        assert not [e for e in logs if e["log_level"] in ("warning", "error")]
        for name in reported:
            assert name in run.stderr, name  # each one's href in a sync.remote_unreadable line

        # The CRM changes them: its version replaces what could not be read.
        harness.emulator.state.patch_activity(broken, {"subject": "Fixed in the CRM"})
        harness.emulator.state.patch_activity(renamed, {"subject": "Renamed in the CRM"})
        replaced = harness.cycle("a")
        assert (replaced.updated, replaced.deleted, replaced.created) == (2, 0, 0)
        assert b"SUMMARY:Fixed in the CRM" in harness.remote("a")[broken_href].data
        assert b"SUMMARY:Renamed in the CRM" in harness.remote("a")[renamed_href].data
        for href in (broken_href, renamed_href):  # whole objects of ours again, nothing of the broken copy merged in
            assert read_remote(href, harness.remote("a")[href].data).uid.startswith("apexcal-27-")
        settled = harness.cycle("a")
        assert (settled.updated, settled.created, settled.deleted, settled.warnings) == (0, 0, 0, ())


class TestMalformedApiRecords:
    """A cycle over CRM records that turned malformed."""

    def test_records_turned_bad_are_reported_and_their_objects_kept(self, harness: Harness) -> None:
        """Bad dates, people and types are reported with id and field; no object is deleted; the good change syncs; a fix syncs."""
        ids = [new_activity(harness.emulator, subject=f"Meeting {i}") for i in range(7)]
        harness.add_target("a", tasks_as="todos", filter={"assigned_to_user_id": 46})
        assert harness.cycle("a").created == 7
        before = {a: harness.object_of("a", a) for a in ids}
        state = harness.emulator.state
        bad = {
            ids[0]: {"start_date": "2026-13-45"},
            ids[1]: {"assigned_to_user_id": "abc"},
            ids[2]: {"activity_type": 42},
            ids[3]: {"start_time": "25:99:00"},
            ids[4]: {"done": "maybe", "end_date": "the day after"},
        }
        for activity_id, fields in bad.items():
            state.put_raw(activity_id, **fields, updated_at=state.stamp())
        state.put_raw(ids[5], subject=None, note=None, location=None, duration=None, updated_at=state.stamp())
        state.patch_activity(ids[6], {"subject": "Changed"})
        with capture_logs() as logs:
            summary = harness.cycle("a")
        assert summary.ok
        assert (summary.deleted, summary.updated) == (0, 2)
        reports = {e["id"]: e["reason"] for e in logs if e["event"] == "apex.invalid_record"}
        assert set(reports) == set(bad)
        for activity_id, fields in bad.items():
            assert any(field in reports[activity_id] for field in fields)
            assert harness.object_of("a", activity_id).data == before[activity_id].data
        assert b"SUMMARY:Changed" in harness.object_of("a", ids[6]).data
        state.patch_activity(ids[0], {"start_date": "2026-01-05", "end_date": "2026-01-05"})
        fixed = harness.cycle("a")
        assert (fixed.updated, fixed.deleted) == (1, 0)
        assert b"20260105T" in harness.object_of("a", ids[0]).data

    def test_type_turned_bad_changes_no_object(self, harness: Harness) -> None:
        """A malformed activity type is reported and skipped; the objects of its activities stay as they are."""
        for i in range(3):
            new_activity(harness.emulator, subject=f"Meeting {i}")
        harness.add_target("a")
        assert harness.cycle("a").created == 3
        before = {h: o.data for h, o in harness.remote("a").items()}
        state = harness.emulator.state
        meeting = next(t for t in state.activity_types(harness.emulator.org_id) if t["name"] == "Meeting")
        state.insert_type({**meeting, "name": 5, "updated_at": state.stamp()})
        with capture_logs() as logs:
            summary = harness.cycle("a")
        assert summary.ok
        assert (summary.created, summary.updated, summary.deleted) == (0, 0, 0)
        assert [e["id"] for e in logs if e["event"] == "apex.invalid_record"] == [meeting["id"]]
        assert {h: o.data for h, o in harness.remote("a").items()} == before
