"""Editable fields read back from calendar objects and converted to the activity's API fields."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from apexcal.apex.models import Activity
from apexcal.ical.editable import (
    NotWritable,
    crm_patch,
    field_hashes,
    read_editable,
    subject_from,
    timing_patch,
)
from apexcal.ical.mapping import MappingOptions, object_for
from tests.unit.ical.factories import TYPES, activity

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "America/Sao_Paulo"]


def _render(act: Activity, tz: str, **options: Any) -> bytes:
    return object_for(act, TYPES, MappingOptions(timezone=tz, **options)).data


def _patched(act: Activity, patch: dict[str, Any]) -> Activity:
    fields: dict[str, Any] = {
        "subject": act.subject,
        "location": act.location,
        "activity_type": act.activity_type,
        "start_date": act.start_date.isoformat() if act.start_date else None,
        "start_time": act.start_time.strftime("%H:%M:%S") if act.start_time else None,
        "end_date": act.end_date.isoformat() if act.end_date else None,
        "end_time": act.end_time.strftime("%H:%M:%S") if act.end_time else None,
        "duration": act.duration,
        "done": act.done,
    }
    fields.update(patch)
    fields.pop("location_geocoded", None)
    return activity(**fields)


def _calendar(component: str, *lines: str) -> bytes:
    body = "\r\n".join(("BEGIN:VCALENDAR", "VERSION:2.0", f"BEGIN:{component}", "UID:x", *lines, f"END:{component}", "END:VCALENDAR"))
    return (body + "\r\n").encode()


@st.composite
def timings(draw: st.DrawFn) -> dict[str, Any]:
    day = draw(st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)))
    if draw(st.booleans()):
        days = draw(st.integers(min_value=0, max_value=4))
        return {"start_date": day.isoformat(), "start_time": None, "end_date": (day + timedelta(days=days)).isoformat(), "end_time": None, "duration": None}
    at = draw(st.times(min_value=time(0, 0), max_value=time(23, 59)).map(lambda t: t.replace(second=0, microsecond=0)))
    minutes = draw(st.integers(min_value=1, max_value=3 * 24 * 60))
    end = datetime.combine(day, at) + timedelta(minutes=minutes)
    if draw(st.booleans()):
        return {"start_date": day.isoformat(), "start_time": at.strftime("%H:%M:%S"), "end_date": None, "end_time": None, "duration": minutes}
    return {
        "start_date": day.isoformat(), "start_time": at.strftime("%H:%M:%S"),
        "end_date": end.date().isoformat(), "end_time": end.time().strftime("%H:%M:%S"), "duration": minutes,
    }


class TestRoundTrip:
    @settings(max_examples=150, deadline=None)
    @given(timing=timings(), tz=st.sampled_from(ZONES), kind=st.sampled_from(["meeting", "task"]))
    def test_calendar_values_written_back_render_to_the_same_values(self, timing: dict[str, Any], tz: str, kind: str) -> None:
        """Reading our rendering, converting it to API fields and rendering those gives the same editable values."""
        act = activity(activity_type=kind, **timing)
        first = read_editable(_render(act, tz), tz)
        assert first is not None
        assume(first.timing is not None)
        assert first.timing is not None
        again = _patched(act, crm_patch(["start", "end", "subject", "location"], first, first, act.subject or ""))
        second = read_editable(_render(again, tz), tz)
        assert second is not None
        assert field_hashes(second) == field_hashes(first)

    @settings(max_examples=150, deadline=None)
    @given(
        instant=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)),
        minutes=st.integers(min_value=0, max_value=2000),
        tz=st.sampled_from(ZONES),
        client_tz=st.sampled_from([*ZONES, "Z"]),
    )
    def test_a_move_written_in_another_zone_lands_on_the_same_instants(self, instant: datetime, minutes: int, tz: str, client_tz: str) -> None:
        """An event a client saved in UTC or another zone becomes wall times in the source zone that render to the same instants."""
        start = instant.replace(second=0, microsecond=0)
        end = start + timedelta(minutes=minutes)

        def line(name: str, at: datetime) -> str:
            if client_tz == "Z":
                return f"{name}:{at.strftime('%Y%m%dT%H%M%SZ')}"
            return f"{name};TZID={client_tz}:{at.astimezone(ZoneInfo(client_tz)).strftime('%Y%m%dT%H%M%S')}"

        if client_tz not in ("Z", "UTC"):
            zone = ZoneInfo(client_tz)
            for at in (start, end):  # the client's own wall time must say the instant
                local = at.astimezone(zone).replace(tzinfo=None)
                assume(local.replace(tzinfo=zone).astimezone(UTC) == at)
        read = read_editable(_calendar("VEVENT", line("DTSTART", start), line("DTEND", end), "SUMMARY:Moved"), tz)
        assert read is not None
        if read.timing is None:
            assert read.problem is not None
            assert "repeated hour" in read.problem
            return
        act = _patched(activity(), timing_patch(read.timing))
        again = read_editable(_render(act, tz), tz)
        assert again is not None
        assert again.timing is not None
        assert isinstance(again.timing.start, datetime)
        assert isinstance(again.timing.end, datetime)
        assert again.timing.start.astimezone(UTC) == start
        expected_end = end if minutes else start + timedelta(minutes=30)  # zero length: the default duration
        assert again.timing.end.astimezone(UTC) == expected_end


class TestTiming:
    def test_timed_event_moved_to_all_day_clears_the_times(self) -> None:
        """DTSTART;VALUE=DATE turns the activity all-day: dates, no times, no duration."""
        read = read_editable(_calendar("VEVENT", "DTSTART;VALUE=DATE:20260305", "DTEND;VALUE=DATE:20260307"), "Europe/Berlin")
        assert read is not None
        assert read.timing is not None
        assert timing_patch(read.timing) == {
            "start_date": "2026-03-05", "start_time": None, "end_date": "2026-03-06", "end_time": None, "duration": None,
        }

    def test_all_day_event_made_timed_gets_wall_times_in_the_source_zone(self) -> None:
        """A UTC DTSTART/DTEND becomes Berlin wall times and a duration in minutes."""
        read = read_editable(_calendar("VEVENT", "DTSTART:20260305T090000Z", "DTEND:20260305T103000Z"), "Europe/Berlin")
        assert read is not None
        assert read.timing is not None
        assert timing_patch(read.timing) == {
            "start_date": "2026-03-05", "start_time": "10:00:00", "end_date": "2026-03-05", "end_time": "11:30:00", "duration": 90,
        }

    def test_all_day_todo_due_is_its_last_day(self) -> None:
        """An all-day to-do's DUE is the day it is due; alone it is a one-day to-do."""
        read = read_editable(_calendar("VTODO", "DUE;VALUE=DATE:20260310"), "UTC")
        assert read is not None
        assert read.timing is not None
        assert timing_patch(read.timing)["start_date"] == "2026-03-10"
        assert timing_patch(read.timing)["end_date"] == "2026-03-10"

    def test_duration_instead_of_dtend(self) -> None:
        """A client writing DURATION instead of DTEND gives the same end."""
        read = read_editable(_calendar("VEVENT", "DTSTART;TZID=Europe/Berlin:20260305T100000", "DURATION:PT45M"), "Europe/Berlin")
        assert read is not None
        assert read.timing is not None
        assert timing_patch(read.timing)["end_time"] == "10:45:00"
        assert timing_patch(read.timing)["duration"] == 45

    def test_across_spring_forward_duration_counts_real_minutes(self) -> None:
        """01:30–03:30 on the night Berlin springs forward lasts 60 minutes."""
        read = read_editable(
            _calendar("VEVENT", "DTSTART;TZID=Europe/Berlin:20260329T013000", "DTEND;TZID=Europe/Berlin:20260329T033000"), "Europe/Berlin"
        )
        assert read is not None
        assert read.timing is not None
        assert timing_patch(read.timing)["duration"] == 60

    @pytest.mark.parametrize(
        ("lines", "why"),
        [
            (("DTSTART;TZID=Mars/Olympus:20260305T100000", "DTEND;TZID=Mars/Olympus:20260305T110000"), "unknown TZID"),
            (("DTSTART:20260305T100000Z", "DTEND:20260305T110000Z", "RRULE:FREQ=WEEKLY"), "RRULE added"),
            (("DTSTART;VALUE=DATE:20260305", "DTEND:20260305T110000Z"), "all-day start with a timed end"),
            (("DTSTART:20260305T100000Z", "DTEND:20260305T090000Z"), "end before the start"),
            (("DTSTART:20261025T003000Z", "DTEND:20261025T013000Z"), "repeated hour"),
            (("DTSTART:tomorrow",), "not a date"),
        ],
    )
    def test_timings_the_activity_cannot_hold_are_problems(self, lines: tuple[str, ...], why: str) -> None:
        """Recurrence, unknown zones, mixed kinds, reversed spans and the repeated DST hour are never written back."""
        read = read_editable(_calendar("VEVENT", *lines), "Europe/Berlin")
        assert read is not None
        assert read.timing is None
        assert read.problem is not None
        assert why in read.problem
        assert read.values()["start"].startswith("!")
        with pytest.raises(NotWritable, match="start"):
            crm_patch(["start"], read, read, "x")


class TestSubject:
    @pytest.mark.parametrize(
        ("summary", "rendered", "subject", "expected"),
        [
            ("New name", "Old name", "Old name", "New name"),
            ("\u2713 New name", "\u2713 Old name", "Old name", "New name"),
            ("New name", "\u2713 Old name", "Old name", "New name"),
            ("New name — Acme", "Old name — Acme", "Old name", "New name"),
        ],
    )
    def test_subject_is_what_the_template_filled(self, summary: str, rendered: str, subject: str, expected: str) -> None:
        """The done mark and the template's other text stay out of the subject."""
        assert subject_from(summary, rendered, subject) == expected

    @pytest.mark.parametrize(("summary", "rendered"), [("Something else", "Old name — Acme"), ("", "Old name")])
    def test_a_summary_out_of_the_template_form_is_not_written(self, summary: str, rendered: str) -> None:
        """A summary that lost the template's text, or an empty one, is not a subject."""
        with pytest.raises(NotWritable):
            subject_from(summary, rendered, "Old name")


class TestLocation:
    def test_location_replaces_text_and_clears_the_old_geocode(self) -> None:
        """The new LOCATION is the location; the old place's geocode goes."""
        read = read_editable(_calendar("VEVENT", "DTSTART:20260305T100000Z", "LOCATION:Room 4\\, HQ"), "UTC")
        assert read is not None
        assert crm_patch(["location"], read, read, "x") == {"location": "Room 4, HQ", "location_geocoded": None}

    def test_values_ignore_escaping_and_folding(self) -> None:
        """Servers re-escaping or re-folding a value do not make it a change."""
        a = read_editable(_calendar("VEVENT", "DTSTART:20260305T100000Z", "SUMMARY:a\\, b", "LOCATION:x"), "UTC")
        b = read_editable(_calendar("VEVENT", "DTSTART:20260305T100000Z", "SUMMARY:a, b", "LOCATI\r\n ON:x"), "UTC")
        assert a is not None
        assert b is not None
        assert field_hashes(a) == field_hashes(b)
