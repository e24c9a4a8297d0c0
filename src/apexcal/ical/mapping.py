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
- **Time.** Dates and times are wall times in ``options.timezone``.  A wall
  time that does not exist (the DST gap) moves forward by the gap (02:30 on a
  spring-forward night becomes 03:30); an ambiguous one (the DST overlap)
  means its first occurrence — both as ``zoneinfo`` does with ``fold=0``.
  No start time → all-day, with an exclusive ``DTEND;VALUE=DATE`` (the day
  after the end date, at least the day after the start).  The end comes from
  end date/time when that is after the start; otherwise (missing, or before
  the start) from ``duration`` minutes, then ``options.default_duration``.
  A midnight crossing (an end time earlier than the start time meaning the
  next day) is inferred only when there is no end date, or when the end date
  equals the start date *and* ``duration`` agrees with the crossing
  (23:30–00:30 with duration 60); 14:30–14:00 on one explicit date is an end
  before the start, so the duration decides (15:00 with duration 30).  In
  UTC, times are written as UTC (``Z``);
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
- **Summary.** The template is filled with cleaned one-line values; the
  separators (``— – - | : ·``) and whitespace an empty field leaves behind
  are trimmed at the ends and collapsed in the middle (see
  :func:`render_summary`); an empty result falls back to the type name.
- **Privacy.** ``full``: subject, note, public description, location, links,
  deal/contact/company names.  ``public``: subject, public description,
  location, links — never the note.  ``busy``: ``SUMMARY:Busy``,
  ``CLASS:PRIVATE`` and nothing else of substance (no description, location,
  conference, URL, categories or colour); the ids (``X-APEX-*``) stay, they
  are not private and round trips need them.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cache
from typing import Literal

from icalendar import Conference, Event, Todo, vGeo, vUri

from apexcal import __version__
from apexcal.apex.models import Activity, ActivityType, GeoPoint, type_key
from apexcal.errors import ICalError
from apexcal.ical.colors import nearest_css3_name, normalize_hex
from apexcal.ical.fields import SUMMARY_ALIASES, SUMMARY_FIELDS, URL_FIELDS
from apexcal.ical.location import APPLE_RADIUS, Place, place_for
from apexcal.ical.text import clean_line, clean_text, truncate_utf8
from apexcal.ical.timezones import vtimezone_bytes, zone_for

Privacy = Literal["full", "public", "busy"]
TasksAs = Literal["todos", "events"]
ComponentKind = Literal["event", "todo"]

SEQUENCE_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
SEQUENCE_MAX = 2**31 - 1
UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu", "UCT", "Universal", "Zulu"})
PRODID = "-//apexcal//apexcal {}//EN".format(".".join(__version__.split(".")[:2]))

_UID = re.compile(r"^apexcal-([1-9][0-9]*)-([1-9][0-9]*)@(.+)$")
_UNSAFE_HREF = re.compile(r"[^A-Za-z0-9._-]")


class Unmappable(ICalError):
    """An activity that cannot become the requested component (e.g. an event with no start date)."""

    def __init__(self, activity_id: int, reason: str) -> None:
        self.activity_id = activity_id
        self.reason = reason
        super().__init__(f"activity {activity_id}: {reason}")


class TemplateError(ICalError, ValueError):
    """A summary or URL template that names an unknown field or is malformed."""

    def __init__(self, template: str, reason: str) -> None:
        self.template = template
        self.reason = reason
        super().__init__(f"template {template!r}: {reason}")


@cache
def _template(template: str, allowed: frozenset[str]) -> tuple[tuple[str, str | None], ...]:
    """Literal text and field names of a ``{field}`` template; only plain names are allowed."""
    try:
        parts = tuple(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(template, str(exc)) from None
    pieces: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parts:
        if name is not None and (name not in allowed or spec or conversion):
            raise TemplateError(template, f"unknown field {{{name}}}; known: {sorted(allowed)}")
        pieces.append((literal, name))
    return tuple(pieces)


def _render(template: str, allowed: frozenset[str], values: Mapping[str, str]) -> str:
    return "".join(
        literal + (values.get(name, "") if name is not None else "")
        for literal, name in _template(template, allowed)
    )


_EMPTY = "\x00"  # stands for an empty field while tidying; clean_line would drop it anyway
_SEPARATORS = "—–\\-|:·"
_EMPTY_BRACKETS = re.compile(r"[(\[]\s*\x00\s*[)\]]")
_GAP = re.compile(rf"[\s{_SEPARATORS}\x00]*\x00[\s{_SEPARATORS}\x00]*")
_FIRST_SEPARATOR = re.compile(rf"(\s*)([{_SEPARATORS}])")


def render_summary(template: str, values: Mapping[str, str]) -> str:
    """The summary template filled in, with the separators of empty fields tidied away.

    ``"{subject} — {deal}"`` without a deal is ``"subject"``, not
    ``"subject —"``: separators (``— – - | : ·``) and whitespace left next to
    empty fields are trimmed at the ends, collapsed to one between two
    filled fields (``"a — {deal} — b"`` → ``"a — b"``), and brackets around
    an empty field vanish.  Text next to filled fields is left alone.
    """
    text = "".join(
        literal + ((values.get(name) or _EMPTY) if name is not None else "")
        for literal, name in _template(template, SUMMARY_FIELDS)
    )
    if _EMPTY not in text:
        return text
    text = _EMPTY_BRACKETS.sub(_EMPTY, text)

    def tidy(match: re.Match[str]) -> str:
        if match.start() == 0 or match.end() == len(text):
            return ""
        run = match.group().replace(_EMPTY, "")
        first = _FIRST_SEPARATOR.match(run)
        if first is None:
            return " " if run else ""
        after = " " if any(c.isspace() for c in run[first.end() :]) else ""
        return (" " if first.group(1) else "") + first.group(2) + after

    return _GAP.sub(tidy, text)


class _FrozenMap(dict[str, ComponentKind]):
    """A read-only, hashable mapping."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def _readonly(self, *args: object, **kwargs: object) -> None:
        raise TypeError("MappingOptions.components is read-only")

    __setitem__ = __delitem__ = _readonly
    update = pop = popitem = clear = setdefault = _readonly  # type: ignore[assignment]


@dataclass(frozen=True, kw_only=True)
class MappingOptions:
    """How activities become calendar components for one target or feed.

    ``summary_template`` may use ``{subject}``, ``{type}``, ``{deal}``,
    ``{contact}``, ``{company}``, ``{assigned_to}`` (alias ``{assignee}``);
    ``activity_url_template``
    ``{id}`` and ``{organization_id}`` (``None``: no link).  Bad templates
    raise :class:`TemplateError` (a ``ValueError``) at construction.
    ``max_note_bytes`` bounds each free-text field (note, public description)
    so an object stays far below server size limits.  ``components`` keys
    may be type names or keys; they are normalised to type keys.  Options are
    hashable.
    """

    timezone: str = "UTC"
    uid_domain: str = "api.achieveapex.com"
    privacy: Privacy = "full"
    tasks_as: TasksAs = "todos"
    components: Mapping[str, ComponentKind] = field(default_factory=lambda: {"task": "todo"})
    summary_template: str = "{subject}"
    activity_url_template: str | None = "https://app.achieveapex.com/activities/{id}"
    default_duration: timedelta = timedelta(minutes=30)
    max_note_bytes: int = 65536

    def __post_init__(self) -> None:
        # Keys normalised to type keys ("Customer Training" → customer_training) and
        # frozen, so options stay hashable and usable as cache keys.
        object.__setattr__(
            self, "components", _FrozenMap({type_key(k): v for k, v in self.components.items()})
        )
        _template(self.summary_template, SUMMARY_FIELDS)
        if self.activity_url_template is not None:
            _template(self.activity_url_template, URL_FIELDS)
        zone_for(self.timezone)
        if self.default_duration <= timedelta(0):
            raise ValueError("default_duration must be positive")
        if self.max_note_bytes < 64:
            raise ValueError("max_note_bytes must be at least 64")


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


def component_kind(activity: Activity, options: MappingOptions) -> ComponentKind:
    """VTODO or VEVENT for this activity under these options."""
    if options.tasks_as == "events" or activity.activity_type is None:
        return "event"
    return options.components.get(type_key(activity.activity_type), "event")


def _is_utc(tzid: str) -> bool:
    return tzid in UTC_NAMES


def _zone(tzid: str) -> tzinfo:
    return UTC if _is_utc(tzid) else zone_for(tzid)


def _wall(day: date, at: time, zone: tzinfo) -> datetime:
    naive = datetime.combine(day, at.replace(tzinfo=None, microsecond=0, fold=0))
    if zone is UTC:
        return naive.replace(tzinfo=UTC)
    # Round trip through UTC: a gap time moves forward by the gap, an overlap time keeps fold=0.
    return naive.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)


def _later(instant: datetime, by: timedelta) -> datetime:
    """``instant + by`` in absolute time, expressed back in the instant's zone."""
    tz = instant.tzinfo
    assert tz is not None
    return (instant.astimezone(UTC) + by).astimezone(tz)


def _minutes(at: time) -> int:
    return at.hour * 60 + at.minute


def _crosses_midnight(activity: Activity, start_time: time, end_time: time) -> bool:
    """Whether an end time earlier than the start time means the next day.

    Inferred when there is no end date; with an end date equal to the start
    date only when ``duration`` says so (23:30–00:30 with duration 60), since
    an explicit same-day date with an earlier end time is more likely a slip.
    """
    start, end = _minutes(start_time), _minutes(end_time)
    if end >= start:
        return False
    if activity.end_date is None:
        return True
    return activity.duration == end + 24 * 60 - start


def _times(activity: Activity, options: MappingOptions) -> tuple[date, date] | tuple[datetime, datetime] | None:
    start_day = activity.start_date
    if start_day is None:
        return None
    if activity.start_time is None:
        last_day = activity.end_date if activity.end_date and activity.end_date >= start_day else start_day
        return start_day, last_day + timedelta(days=1)
    zone = _zone(options.timezone)
    start = _wall(start_day, activity.start_time, zone)
    end: datetime | None = None
    if activity.end_time is not None:
        end_day = activity.end_date or start_day
        if end_day == start_day and _crosses_midnight(activity, activity.start_time, activity.end_time):
            end_day += timedelta(days=1)
        candidate = _wall(end_day, activity.end_time, zone)
        if candidate.astimezone(UTC) > start.astimezone(UTC):
            end = candidate
    if end is None and activity.duration:
        end = _later(start, timedelta(minutes=activity.duration))
    if end is None:
        end = _later(start, options.default_duration)
    return start, end


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(microsecond=0)


def sequence_for(updated_at: datetime) -> int:
    """SEQUENCE: whole seconds from 2020-01-01 to ``updated_at``.

    Clamped to RFC 5545's integer range: 0 before 2020, 2**31 - 1 from 2088 on.
    """
    return min(SEQUENCE_MAX, max(0, int((updated_at - SEQUENCE_EPOCH).total_seconds())))


def _names(activity: Activity, type_name: str | None) -> dict[str, str]:
    names = {
        "subject": clean_line(activity.subject),
        "type": clean_line(type_name),
        "deal": clean_line(activity.deal.name if activity.deal else None),
        "contact": clean_line(activity.contact.full_name if activity.contact else None),
        "company": clean_line(activity.company.name if activity.company else None),
        "assigned_to": clean_line(activity.assigned_to_user.full_name if activity.assigned_to_user else None),
    }
    for alias, canonical in SUMMARY_ALIASES.items():
        names[alias] = names[canonical]
    return names


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
        times = _times(activity, options)
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
    names = _names(activity, type_name)
    busy = options.privacy == "busy"
    url = None
    if not busy and options.activity_url_template is not None:
        url = _render(
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
                    "X-ADDRESS": place.apple_address or place.location,
                    "X-APPLE-RADIUS": f"{APPLE_RADIUS:.1f}",
                    "X-TITLE": place.location,
                },
            )
    component.add("X-APEX-ACTIVITY-ID", str(activity.id))
    component.add("X-APEX-ORGANIZATION-ID", str(activity.organization_id))
    if hex_color:
        component.add("X-APEX-COLOR", hex_color)
    if activity_type and activity_type.icon_key and not busy:
        component.add("X-APEX-ICON", clean_line(activity_type.icon_key))
    return component


@cache
def _header() -> bytes:
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:{PRODID}\r\nCALSCALE:GREGORIAN\r\n".encode("ascii")


def calendar_bytes(component: Event | Todo, timezone: str) -> bytes:
    """A complete VCALENDAR around one component, with the VTIMEZONE its TZID needs."""
    body: bytes = component.to_ical()
    tz = b""
    if not _is_utc(timezone) and b";TZID=" in body:
        tz = vtimezone_bytes(timezone)
    return _header() + tz + body + b"END:VCALENDAR\r\n"


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
