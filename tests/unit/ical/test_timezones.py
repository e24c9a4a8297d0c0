"""VTIMEZONE definitions: compact, RRULE-based and right far beyond 2038."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from ical.calendar_stream import IcsCalendarStream
from icalendar import Timezone

from apexcal.errors import UnknownTimezone
from apexcal.ical.timezones import vtimezone_bytes


def _resolve(tzid: str, local: str) -> timedelta | None:
    """The UTC offset the strict parser gives a local time, using only our VTIMEZONE.

    The TZID is renamed so the parser cannot fall back to its own tz database.
    """
    alias = "Apexcal-Test/" + tzid.replace("/", "-")
    block = vtimezone_bytes(tzid).decode().replace(f"TZID:{tzid}", f"TZID:{alias}")
    text = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//test//EN\r\n"
        + block
        + f"BEGIN:VEVENT\r\nUID:1\r\nDTSTAMP:20250101T000000Z\r\nDTSTART;TZID={alias}:{local}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    start = IcsCalendarStream.calendar_from_ics(text).events[0].dtstart
    assert isinstance(start, datetime)
    return start.utcoffset()


class TestVTimezone:
    """Generated VTIMEZONEs resolve local times to the right offsets."""

    @pytest.mark.parametrize(
        ("tzid", "local", "hours"),
        [
            ("America/New_York", "20450701T120000", -4),
            ("America/New_York", "20450115T120000", -5),
            ("Europe/Berlin", "20450701T120000", 2),
            ("Europe/Berlin", "20451215T120000", 1),
            ("Australia/Sydney", "20450115T120000", 11),
            ("Australia/Sydney", "20450715T120000", 10),
            ("America/New_York", "20250612T100000", -4),
            ("Asia/Kolkata", "20450701T120000", 5.5),
            ("America/Nuuk", "20450701T120000", -1),
            ("America/Nuuk", "20450115T120000", -2),
        ],
    )
    def test_offset_after_2038(self, tzid: str, local: str, hours: float) -> None:
        """Local times, also in 2045, resolve to the zone's offset with only our definition."""
        assert _resolve(tzid, local) == timedelta(hours=hours)

    def test_dst_zone_has_two_rrule_observances(self) -> None:
        """A DST zone has one DAYLIGHT and one STANDARD, each with a yearly RRULE."""
        text = vtimezone_bytes("Europe/Berlin").decode()
        assert text.count("BEGIN:DAYLIGHT") == 1
        assert text.count("BEGIN:STANDARD") == 1
        assert "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU" in text
        assert "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU" in text
        assert "RDATE" not in text

    def test_zone_without_dst_has_single_standard(self) -> None:
        """A zone without DST gets one STANDARD observance and no DAYLIGHT."""
        text = vtimezone_bytes("Asia/Kolkata").decode()
        assert text.count("BEGIN:STANDARD") == 1
        assert "DAYLIGHT" not in text
        assert "TZOFFSETTO:+0530" in text

    def test_icalendar_reads_it_too(self) -> None:
        """icalendar parses the block and yields the same TZID."""
        parsed = Timezone.from_ical(vtimezone_bytes("Australia/Sydney"))
        assert parsed.tz_name == "Australia/Sydney"

    def test_fallback_zone_is_still_valid(self) -> None:
        """A zone whose rules an RRULE cannot state (Casablanca) falls back to a transition list."""
        assert _resolve("Africa/Casablanca", "20300601T120000") is not None
        assert b"RDATE" in vtimezone_bytes("Africa/Casablanca")

    @pytest.mark.parametrize("tzid", ["Mars/Olympus", "../etc/passwd", "/etc/localtime", ""])
    def test_unknown_zone_is_refused(self, tzid: str) -> None:
        """Names tzdata does not know raise UnknownTimezone."""
        with pytest.raises(UnknownTimezone):
            vtimezone_bytes(tzid)
