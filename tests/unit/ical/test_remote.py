"""Reading objects back from a server: ids and completion, whoever edited them."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apexcal.errors import RemoteParseError
from apexcal.ical.mapping import MappingOptions, object_for
from apexcal.ical.remote import read_remote
from tests.unit.ical.factories import TYPES, activity

HREF = "/dav/jane/crm/apexcal-27-101_api.achieveapex.com.ics"


def _todo(*lines: str, uid: str = "apexcal-27-101@api.achieveapex.com") -> bytes:
    body = "\r\n".join(("BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Other//Client//EN", "BEGIN:VTODO", f"UID:{uid}", "DTSTAMP:20250601T000000Z", "SUMMARY:Send proposal", *lines, "END:VTODO", "END:VCALENDAR", ""))
    return body.encode()


TASKS_ORG_DONE = _todo("STATUS:COMPLETED", "COMPLETED:20250602T101500Z", "PERCENT-COMPLETE:100", "X-TASKS-ORG-ORDER:3")
THUNDERBIRD_DONE = _todo(
    "COMPLETED:20250602T101500Z",
    "PERCENT-COMPLETE:100",
    "STATUS:COMPLETED",
    "X-MOZ-GENERATION:3",
    "X-MOZ-LASTACK:20250602T101500Z",
    "LAST-MODIFIED:20250602T101501Z",
)
THUNDERBIRD_COMPLETED_ONLY = _todo("COMPLETED:20250602T101500Z", "X-MOZ-GENERATION:2")


class TestForeignVariants:
    """Completion written by other clients is read as the documented rules say."""

    @pytest.mark.parametrize(
        ("data", "done", "status", "percent"),
        [
            (TASKS_ORG_DONE, True, "COMPLETED", 100),
            (THUNDERBIRD_DONE, True, "COMPLETED", 100),
            (THUNDERBIRD_COMPLETED_ONLY, True, None, None),
            (_todo("PERCENT-COMPLETE:100"), True, None, 100),
            (_todo("PERCENT-COMPLETE:60"), False, None, 60),
            (_todo("STATUS:IN-PROCESS", "PERCENT-COMPLETE:40"), False, "IN-PROCESS", 40),
            (_todo("STATUS:NEEDS-ACTION"), False, "NEEDS-ACTION", None),
            (_todo("STATUS:NEEDS-ACTION", "COMPLETED:20250602T101500Z"), False, "NEEDS-ACTION", None),
            (_todo("STATUS:CANCELLED"), False, "CANCELLED", None),
            (_todo("STATUS:CANCELLED", "PERCENT-COMPLETE:100"), False, "CANCELLED", 100),
            (_todo("status:completed"), True, "COMPLETED", None),
            (_todo(), False, None, None),
            (_todo("COMPLETED:yesterday", "DTSTART:garbage"), True, None, None),
            (_todo("STATUS:NEEDS-ACTION", "PERCENT-COMPLETE:lots"), False, "NEEDS-ACTION", None),
            (_todo("DUE:soon", "PERCENT-COMPLETE:100"), True, None, 100),
        ],
    )
    def test_completion_state(self, data: bytes, done: bool, status: str | None, percent: int | None) -> None:
        """done, status and percent follow STATUS, COMPLETED and PERCENT-COMPLETE."""
        remote = read_remote(HREF, data)
        assert (remote.done, remote.status, remote.percent) == (done, status, percent)
        assert remote.kind == "VTODO"

    def test_thunderbird_times_are_read(self) -> None:
        """COMPLETED and LAST-MODIFIED are read as UTC instants."""
        remote = read_remote(HREF, THUNDERBIRD_DONE)
        assert remote.completed == datetime(2025, 6, 2, 10, 15, tzinfo=UTC)
        assert remote.last_modified == datetime(2025, 6, 2, 10, 15, 1, tzinfo=UTC)

    def test_malformed_value_elsewhere_keeps_state_readable(self) -> None:
        """A broken DTSTART does not hide a readable COMPLETED time or the ids."""
        remote = read_remote(HREF, _todo("DTSTART:garbage", "COMPLETED:20250602T101500Z", "STATUS:COMPLETED"))
        assert remote.done is True
        assert remote.completed == datetime(2025, 6, 2, 10, 15, tzinfo=UTC)
        assert remote.activity_id == 101

    def test_ids_from_our_uid(self) -> None:
        """Our UID gives the organization and activity ids."""
        remote = read_remote(HREF, TASKS_ORG_DONE)
        assert (remote.organization_id, remote.activity_id, remote.href) == (27, 101, HREF)

    def test_ids_from_x_properties_when_uid_is_foreign(self) -> None:
        """A client that rewrote the UID still yields ids from X-APEX-* properties."""
        remote = read_remote(HREF, _todo("X-APEX-ACTIVITY-ID:55", "X-APEX-ORGANIZATION-ID:27", uid="a1b2c3"))
        assert (remote.uid, remote.organization_id, remote.activity_id) == ("a1b2c3", 27, 55)

    def test_foreign_object_has_no_ids(self) -> None:
        """An object we did not write has no activity id."""
        remote = read_remote(HREF, _todo(uid="4d3f-other@example.com"))
        assert remote.activity_id is None
        assert remote.organization_id is None

    def test_event_is_never_done(self) -> None:
        """A VEVENT is read with kind VEVENT and done False."""
        data = object_for(activity(done=True), TYPES, MappingOptions()).data
        remote = read_remote(HREF, data)
        assert (remote.kind, remote.done, remote.activity_id) == ("VEVENT", False, 101)

    def test_our_own_done_todo_reads_done(self) -> None:
        """Our own mapped done VTODO (with VTIMEZONE) reads back done."""
        data = object_for(activity(activity_type="task", done=True), TYPES, MappingOptions(timezone="Europe/Berlin")).data
        assert read_remote(HREF, data.decode()).done is True


class TestMalformed:
    """Malformed input is a RemoteParseError naming the href, never a crash."""

    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b"not a calendar",
            b"\xff\xfe\x00garbage",
            b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
            b"BEGIN:VCALENDAR\r\nBEGIN:VTODO\r\nSUMMARY:x\r\nEND:VTODO\r\nEND:VCALENDAR\r\n",
            b"BEGIN:VCALENDAR\r\nBEGIN:VTODO\r\nUID:x\r\n",
        ],
    )
    def test_bad_objects_raise_remote_parse_error(self, data: bytes) -> None:
        """Empty, non-calendar, componentless or UID-less data raise RemoteParseError with the href."""
        with pytest.raises(RemoteParseError) as info:
            read_remote(HREF, data)
        assert info.value.href == HREF

    @settings(max_examples=300, deadline=None)
    @given(data=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode)))
    def test_garbage_never_crashes(self, data: bytes) -> None:
        """Arbitrary bytes either read or raise RemoteParseError."""
        with contextlib.suppress(RemoteParseError):
            read_remote(HREF, data)

    @settings(max_examples=300, deadline=None)
    @given(
        lines=st.lists(
            st.tuples(
                st.sampled_from(["STATUS", "COMPLETED", "PERCENT-COMPLETE", "UID", "DTSTART", "DUE", "X-APEX-ACTIVITY-ID", "LAST-MODIFIED", "BEGIN", "END"]),
                st.text(max_size=30),
            ),
            max_size=8,
        )
    )
    def test_mutated_todos_never_crash(self, lines: list[tuple[str, str]]) -> None:
        """Plausible but corrupted VTODOs either read or raise RemoteParseError."""
        data = _todo(*(f"{name}:{value}".replace("\r", "").replace("\n", "") for name, value in lines))
        with contextlib.suppress(RemoteParseError):
            read_remote(HREF, data)
