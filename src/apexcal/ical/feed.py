"""Deterministic, streaming .ics feeds: header, VTIMEZONEs, components, END.

:func:`write_calendar` writes one VCALENDAR to a binary stream without
holding the components in memory: they are serialized and written one at a
time, in the order given (callers pass them sorted by UID so the bytes do not
depend on database order).  The VTIMEZONEs must precede the components, so
the caller names the zones up front; every timed activity of a source uses
the source's configured zone, so that is simply ``[source.timezone]``.

Calendar properties carry both the RFC 7986 names and the de-facto X-WR /
Apple names that subscription clients read.  There is no METHOD: a feed is a
published calendar, not an iTIP message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import BinaryIO

from icalendar import Calendar, Component, vDuration, vText, vUri

from apexcal.ical.colors import nearest_css3_name, normalize_hex
from apexcal.ical.mapping import PRODID
from apexcal.ical.serialize import component_bytes
from apexcal.ical.text import clean_line, clean_text
from apexcal.ical.times import UTC_NAMES
from apexcal.ical.timezones import vtimezone_bytes

_FOOTER = b"END:VCALENDAR\r\n"


@dataclass(frozen=True, kw_only=True)
class CalendarProps:
    """What a feed says about itself (name, description, colour, refresh hint, source, zone)."""

    name: str
    description: str | None = None
    color: str | None = None
    refresh_interval: timedelta = timedelta(hours=1)
    source_url: str | None = None
    timezone: str = "UTC"


def calendar_header(props: CalendarProps) -> bytes:
    """The VCALENDAR opening and its properties, up to (not including) the first component."""
    name = clean_line(props.name)
    description = clean_text(props.description)
    hex_color = normalize_hex(props.color)
    # Calendar.new() would add a random UID (not deterministic) and, in icalendar 7.3,
    # writes NAME/DESCRIPTION without TEXT escaping; so the properties are added as vText.
    calendar = Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    calendar.add("CALSCALE", "GREGORIAN")
    if name:
        calendar.add("NAME", vText(name))
        calendar.add("X-WR-CALNAME", vText(name))
    if description:
        calendar.add("DESCRIPTION", vText(description))
        calendar.add("X-WR-CALDESC", vText(description))
    calendar.add("REFRESH-INTERVAL", vDuration(props.refresh_interval), parameters={"VALUE": "DURATION"})
    calendar.add("X-PUBLISHED-TTL", vDuration(props.refresh_interval))
    if hex_color:
        calendar.add("COLOR", vText(nearest_css3_name(hex_color) or ""))
        calendar.add("X-APPLE-CALENDAR-COLOR", hex_color.upper())
    if props.source_url:
        calendar.add("SOURCE", vUri(props.source_url), parameters={"VALUE": "URI"})
    calendar.add("X-WR-TIMEZONE", props.timezone)
    text = component_bytes(calendar)
    assert text.endswith(_FOOTER)
    return text[: -len(_FOOTER)]


def inner_component(data: bytes) -> bytes:
    """The VEVENT/VTODO lines of a one-object VCALENDAR (as made by ``object_for``), for reuse in a feed."""
    for kind in (b"VEVENT", b"VTODO"):
        start = data.find(b"BEGIN:" + kind + b"\r\n")
        if start >= 0:
            end_marker = b"END:" + kind + b"\r\n"
            end = data.rfind(end_marker)
            return data[start : end + len(end_marker)]
    raise ValueError("no VEVENT or VTODO in the object")


def write_calendar(
    out: BinaryIO,
    components: Iterable[Component | bytes],
    props: CalendarProps,
    timezones: Iterable[str],
) -> None:
    """Write a complete feed to ``out``: header, a VTIMEZONE per zone, each component, END.

    Components may be icalendar components or already-serialized component
    bytes (see :func:`inner_component`).  UTC needs no VTIMEZONE and is skipped.
    """
    out.write(calendar_header(props))
    for tzid in sorted(set(timezones) - UTC_NAMES):
        out.write(vtimezone_bytes(tzid))
    for component in components:
        out.write(component if isinstance(component, bytes) else component_bytes(component))
    out.write(_FOOTER)


def etag_for(body: bytes) -> str:
    """A strong ETag for a body: the quoted sha256 hex digest."""
    return etag_from_sha256(hashlib.sha256(body).hexdigest())


def etag_from_sha256(hexdigest: str) -> str:
    """The ETag of a body whose SHA-256 was computed while writing it (the one formula)."""
    return f'"{hexdigest}"'
