"""Bad input in a real cycle: malformed CRM records and calendar objects are reported and skipped, nothing else is lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.fixtures.caldav_servers import CalDAVServerHandle
from tests.fixtures.emulator import EmulatorHandle
from tests.integration.test_sync_support import Harness, new_activity


@pytest.fixture
def harness(emulator: EmulatorHandle, xandikos_server: CalDAVServerHandle, tmp_path: Path) -> Iterator[Harness]:
    """A harness on the emulator and Xandikos, which stores most malformed objects it is sent."""
    xandikos_server.start()
    h = Harness(emulator=emulator, server=xandikos_server, tmp=tmp_path)
    try:
        yield h
    finally:
        h.close()


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
