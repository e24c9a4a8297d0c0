"""The two independent iCalendar parsers every output must satisfy."""

from __future__ import annotations

from ical.calendar import Calendar as StrictCalendar
from ical.calendar_stream import IcsCalendarStream
from icalendar import Calendar


def parse_both(data: bytes) -> tuple[Calendar, StrictCalendar]:
    """Parse with icalendar and with the strict ``ical`` package; either raises on bad input."""
    text = data.decode("utf-8")
    return Calendar.from_ical(text), IcsCalendarStream.calendar_from_ics(text)
