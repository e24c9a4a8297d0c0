"""Activity → VEVENT / VTODO: the heart of what a user sees in a calendar.

Pure and deterministic: the output depends only on the activity, its type and
the options; the same input always serializes to the same bytes.

Decisions worth knowing:

- **Component.** ``tasks_as="todos"`` maps the types listed in
  ``components`` (default ``{"task": "todo"}``) to VTODO; everything else,
  and everything when ``tasks_as="events"``, is a VEVENT.
- **No start date.** A VTODO is written without DTSTART and DUE (a to-do
  without a date is still a to-do); a VEVENT cannot exist without DTSTART, so
  :func:`map_activity` raises :class:`Unmappable` and the caller skips it.
- **Time.** Dates and times are wall times in ``options.timezone``; the
  span (all-day, DST gaps and overlaps, ends, midnight crossings) follows
  :mod:`apexcal.ical.times`.  In UTC, times are written as UTC (``Z``);
  otherwise with TZID and a VTIMEZONE in the object.
- **Change.** ``SEQUENCE`` is the number of seconds from 2020-01-01 to
  ``updated_at``: it rises with every change and never falls, with no stored
  state.  ``DTSTAMP`` = ``LAST-MODIFIED`` = ``updated_at``; ``CREATED`` =
  ``created_at``.
- **All-day VTODO.** ``DUE;VALUE=DATE`` is the last day itself (the end
  date, or the start date), not the exclusive next day a VEVENT's DTEND
  uses: task apps show DUE as the day the task is due.  RFC 5545 wants DUE
  after DTSTART, so a one-day to-do carries ``DUE`` alone; a multi-day one
  keeps ``DTSTART`` on its first day.
- **Done.** A done VTODO has ``STATUS:COMPLETED``, ``COMPLETED`` (at
  ``updated_at``) and ``PERCENT-COMPLETE:100``; an open one
  ``STATUS:NEEDS-ACTION``.  A VEVENT carries no completion properties and no
  STATUS (an event that took place is not "confirmed" or "cancelled").
- **Summary.** The template is filled with cleaned one-line values, the
  separators of empty fields tidied away (:mod:`apexcal.ical.summary`); an
  empty result falls back to the type name.  With ``done_events = "check"``
  a done activity shown as a VEVENT has ``✓ `` before its summary;
  ``"hide"`` leaves done activities that are not tasks out (:func:`is_hidden`,
  applied by the callers that choose what to map).
- **Privacy.** ``full``: subject, note, public description, location, links,
  deal/contact/company names.  ``public``: subject, public description,
  location, links — never the note.  ``busy``: ``SUMMARY:Busy``,
  ``CLASS:PRIVATE`` and nothing else of substance (no description, location,
  conference, URL, categories or colour); the ids (``X-APEX-*``) stay, they
  are not private and round trips need them.
- **Reminders.** ``alarms`` (type key or ``default`` → triggers) adds
  apexcal's own VALARMs (:mod:`apexcal.ical.alarms`: a UID and the
  ``X-APEX-ALARM`` marker each) to activities that are not done; none by
  default.
- **Attendees.** With ``attendees`` (and ``full`` privacy only: under
  ``public`` the contact's name is not shown, under ``busy`` nothing is), the
  assigned user is the ``ORGANIZER`` and an ``ATTENDEE`` (``ROLE=CHAIR``,
  ``PARTSTAT=ACCEPTED``), the contact an ``ATTENDEE``
  (``ROLE=REQ-PARTICIPANT``), each with ``CN`` (:func:`~apexcal.ical.text.param_text`)
  and ``mailto:`` from the joined record's email.  Every such line carries ``SCHEDULE-AGENT=CLIENT``
  (RFC 6638: the server sends no invitation or cancellation) and
  ``X-APEX-OWNED=TRUE`` (it is apexcal's; attendees the user adds are not,
  :mod:`apexcal.ical.ownership`).  Without a usable email there is no line
  for that person; the contact's is left out when it is the user's address.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache

from icalendar import Conference, Event, Todo, vGeo, vUri

from apexcal import __version__
from apexcal.apex.models import Activity, ActivityType, GeoPoint, type_key
from apexcal.errors import Unmappable
from apexcal.ical.alarms import alarms_for, triggers_for
from apexcal.ical.colors import nearest_css3_name, normalize_hex
from apexcal.ical.fields import (
    DONE_MARK,
    URL_FIELDS,
    ComponentKind,
)
from apexcal.ical.location import APPLE_RADIUS, Place, place_for
from apexcal.ical.options import MappingOptions
from apexcal.ical.people import add_people
from apexcal.ical.serialize import component_bytes
from apexcal.ical.summary import render_summary, render_template, summary_values
from apexcal.ical.text import clean_line, clean_text, param_text, truncate_utf8
from apexcal.ical.times import is_utc, span
from apexcal.ical.timezones import vtimezone_bytes

SEQUENCE_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
SEQUENCE_MAX = 2**31 - 1
__all__ = [
    "PRODID",
    "MappedObject",
    "MappingOptions",
    "calendar_bytes",
    "calendar_header",
    "component_kind",
    "href_name",
    "is_hidden",
    "map_activity",
    "object_for",
    "parse_uid",
    "sequence_for",
    "uid_for",
]

PRODID = "-//apexcal//apexcal {}//EN".format(".".join(__version__.split(".")[:2]))

_UID = re.compile(r"^apexcal-([1-9][0-9]*)-([1-9][0-9]*)@(.+)$")
_UNSAFE_HREF = re.compile(r"[^A-Za-z0-9._-]")



@dataclass(frozen=True, kw_only=True)
class MappedObject:
    """One CalDAV resource: a complete VCALENDAR holding one component."""

    uid: str
    href_name: str
    component_kind: ComponentKind
    data: bytes
    content_hash: str


def uid_for(organization_id: int, activity_id: int, domain: str) -> str:
    """The UID of an activity, stable forever: ``apexcal-<org>-<id>@<domain>``."""
    return f"apexcal-{organization_id}-{activity_id}@{domain}"


def parse_uid(uid: str) -> tuple[int, int] | None:
    """``(organization_id, activity_id)`` when ``uid`` is one of ours, else ``None``."""
    match = _UID.match(uid.strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def href_name(uid: str) -> str:
    """A resource name safe in any URL path and file system: ``<uid with [^A-Za-z0-9._-] as _>.ics``."""
    return _UNSAFE_HREF.sub("_", uid) + ".ics"


def is_hidden(activity: Activity, options: MappingOptions) -> bool:
    """Whether ``done_events = "hide"`` leaves ``activity`` out: done, and not a task.

    A task is an activity whose type maps to a VTODO in ``components``
    (whatever ``tasks_as`` says): a done task stays, as a completed to-do or,
    where tasks are events, as an event.
    """
    if options.done_events != "hide" or not activity.done:
        return False
    kind = options.components.get(type_key(activity.activity_type)) if activity.activity_type else None
    return kind != "todo"


def component_kind(activity: Activity, options: MappingOptions) -> ComponentKind:
    """VTODO or VEVENT for this activity under these options."""
    if options.tasks_as == "events" or activity.activity_type is None:
        return "event"
    return options.components.get(type_key(activity.activity_type), "event")


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(microsecond=0)


def sequence_for(updated_at: datetime) -> int:
    """SEQUENCE: whole seconds from 2020-01-01 to ``updated_at``.

    Clamped to RFC 5545's integer range: 0 before 2020, 2**31 - 1 from 2088 on.
    """
    return min(SEQUENCE_MAX, max(0, int((updated_at - SEQUENCE_EPOCH).total_seconds())))


def _description(
    activity: Activity, names: Mapping[str, str], place: Place, url: str | None, options: MappingOptions
) -> str | None:
    blocks: list[str] = []
    public = clean_text(activity.public_description)
    if public:
        blocks.append(truncate_utf8(public, options.max_note_bytes))
    if options.privacy == "full":
        note = clean_text(activity.note)
        if note:
            blocks.append(truncate_utf8(note, options.max_note_bytes))
        people = [
            f"{label}: {names[key]}"
            for label, key in (("Deal", "deal"), ("Contact", "contact"), ("Company", "company"))
            if names[key]
        ]
        if people:
            blocks.append("\n".join(people))
    if place.conference_url:
        blocks.append(f"Join: {place.conference_url}")
    if url:
        blocks.append(url)
    return "\n\n".join(blocks) or None


def _type_for(activity: Activity, types: Mapping[str, ActivityType]) -> ActivityType | None:
    raw = activity.activity_type
    if not raw:
        return None
    return types.get(raw) or types.get(type_key(raw))


def map_activity(
    activity: Activity,
    types: Mapping[str, ActivityType],
    options: MappingOptions,
    *,
    geocode: GeoPoint | None = None,
) -> Event | Todo:
    """The VEVENT or VTODO for an activity (see the module docstring for every rule).

    ``types`` is keyed by ``type_key(type.name)``.  ``geocode`` is used when
    the activity has no ``location_geocoded`` of its own (the caller resolves
    it; mapping does no I/O); being a guess, it adds GEO and the structured
    location but leaves the LOCATION text as written.  Raises :class:`Unmappable` for a VEVENT without
    a start date or with dates out of range.
    """
    kind = component_kind(activity, options)
    try:
        times = span(activity, options.timezone, options.default_duration)
    except OverflowError:
        raise Unmappable(activity.id, "dates out of range") from None
    if times is None and kind == "event":
        raise Unmappable(activity.id, "no start date: an event needs one")
    start, end = times if times else (None, None)
    if kind == "todo" and start is not None and not isinstance(start, datetime):
        # All-day to-do: DUE is the last day itself (task apps read DUE as "due that day").
        end = end - timedelta(days=1) if isinstance(end, date) else None
        if end == start:
            start = None  # DUE must be after DTSTART: a one-day to-do has DUE alone
    activity_type = _type_for(activity, types)
    type_name = activity_type.name if activity_type else activity.activity_type
    names = summary_values(activity, type_name)
    busy = options.privacy == "busy"
    url = None
    if not busy and options.activity_url_template is not None:
        url = render_template(
            options.activity_url_template,
            URL_FIELDS,
            {"id": str(activity.id), "organization_id": str(activity.organization_id)},
        )
    if busy:
        place = Place()
        summary = "Busy"
    else:
        if activity.location_geocoded is not None:
            place = place_for(activity.location, activity.location_geocoded)
        else:
            place = place_for(activity.location, geocode, guessed=geocode is not None)
        summary = clean_line(render_summary(options.summary_template, names))
        summary = summary or names["type"] or "Activity"
        if activity.done and kind == "event" and options.done_events == "check":
            summary = DONE_MARK + summary
    updated = _utc(activity.updated_at)
    hex_color = normalize_hex(activity_type.color) if activity_type and not busy else None
    common = {
        "uid": uid_for(activity.organization_id, activity.id, options.uid_domain),
        "summary": summary,
        "stamp": updated,
        "last_modified": updated,
        "created": _utc(activity.created_at),
        "sequence": sequence_for(activity.updated_at),
        "start": start,
        "end": end,
        "classification": "PRIVATE" if busy else ("PUBLIC" if options.privacy == "public" else None),
        "categories": [clean_line(type_name)] if type_name and clean_line(type_name) and not busy else (),
        "color": nearest_css3_name(hex_color) if hex_color else None,
        "description": None if busy else _description(activity, names, place, url, options),
        "location": place.location,
        "url": url,
        "conferences": (
            [Conference(place.conference_url, feature="VIDEO", label="Join")] if place.conference_url else None
        ),
    }
    component: Event | Todo
    if kind == "todo":
        component = Todo.new(status="COMPLETED" if activity.done else "NEEDS-ACTION", **common)  # type: ignore[arg-type]
        if activity.done:
            component.add("COMPLETED", updated)
            component.add("PERCENT-COMPLETE", 100)
    else:
        component = Event.new(**common)  # type: ignore[arg-type]
    if place.geo is not None and place.conference_url is None:
        component.add("GEO", vGeo(place.geo))
        if place.location:
            component.add(
                "X-APPLE-STRUCTURED-LOCATION",
                vUri(f"geo:{place.geo[0]:.6f},{place.geo[1]:.6f}"),
                parameters={
                    "VALUE": "URI",
                    "X-ADDRESS": param_text(place.apple_address or place.location),
                    "X-APPLE-RADIUS": f"{APPLE_RADIUS:.1f}",
                    "X-TITLE": param_text(place.location),
                },
            )
    component.add("X-APEX-ACTIVITY-ID", str(activity.id))
    component.add("X-APEX-ORGANIZATION-ID", str(activity.organization_id))
    if hex_color:
        component.add("X-APEX-COLOR", hex_color)
    if activity_type and activity_type.icon_key and not busy:
        component.add("X-APEX-ICON", clean_line(activity_type.icon_key))
    if options.attendees and options.privacy == "full":
        add_people(component, activity)
    if options.alarms and not activity.done:  # a done activity needs no reminder
        key = type_key(activity.activity_type) if activity.activity_type else None
        for alarm in alarms_for(component, triggers_for(options.alarms, key), timezone=options.timezone):
            component.add_component(alarm)
    return component


@cache
def calendar_header() -> bytes:
    """The lines that open every calendar object apexcal writes, up to its first component."""
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:{PRODID}\r\nCALSCALE:GREGORIAN\r\n".encode("ascii")


def calendar_bytes(component: Event | Todo, timezone: str) -> bytes:
    """A complete VCALENDAR around one component, with the VTIMEZONE its TZID needs.

    The component's bytes are icalendar's ``to_ical()`` ones, written by
    :func:`~apexcal.ical.serialize.component_bytes` (a fifth of the cost).
    """
    body = component_bytes(component)
    tz = b""
    if not is_utc(timezone) and b";TZID=" in body:
        tz = vtimezone_bytes(timezone)
    return calendar_header() + tz + body + b"END:VCALENDAR\r\n"


def object_for(
    activity: Activity,
    types: Mapping[str, ActivityType],
    options: MappingOptions,
    *,
    geocode: GeoPoint | None = None,
) -> MappedObject:
    """The CalDAV resource for an activity: same input, same bytes, same ``content_hash``."""
    component = map_activity(activity, types, options, geocode=geocode)
    data = calendar_bytes(component, options.timezone)
    uid = uid_for(activity.organization_id, activity.id, options.uid_domain)
    return MappedObject(
        uid=uid,
        href_name=href_name(uid),
        component_kind="todo" if isinstance(component, Todo) else "event",
        data=data,
        content_hash=hashlib.sha256(data).hexdigest(),
    )
