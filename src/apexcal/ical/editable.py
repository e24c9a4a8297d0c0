"""The fields a calendar user may edit and have taken back to the CRM: read, compared, converted.

With a target's ``writeback_fields`` (DESIGN §5, "Ownership") a move, a
resize, a rename or a new location made in a calendar app goes back to the
activity.  This module is the pure half of that: it reads the editable
fields of one calendar object (:func:`read_editable`), gives each a
normalised value and a short hash of it (:func:`field_hashes`) so two
copies compare whatever a server or client did to their bytes, and turns
the calendar's values into the activity's API fields (:func:`crm_patch`).

The fields and what they are in the object:

* ``subject`` — the ``SUMMARY`` text; back in the CRM it is the part of it
  the summary template filled with the subject (``"✓ "`` of a done event
  and the template's other text stay out);
* ``location`` — the ``LOCATION`` text, taken as the new location as a
  whole (the CRM's old geocode described the old place, so it is cleared);
* ``start`` and ``end`` — the span the object occupies: ``DTSTART`` and
  ``DTEND``/``DUE``/``DURATION`` read as a start and an exclusive end
  (dates when all-day; an all-day to-do's ``DUE`` is its last day, as the
  mapping writes it), timed values as instants in ``[source] timezone``.

A timing apexcal cannot write as an activity — recurrence (``RRULE``,
``RDATE``, ``EXRULE``), a ``TZID`` that names no known zone, a date start
with a timed end, an end before the start, an unreadable value, or a wall
time in the repeated hour of a DST change of ``[source] timezone`` (the
API's wall times cannot say which of the two is meant) — is read as a
*problem*: its normalised value starts with ``"!"`` and it is never
written back.

Values are compared as the sha256 of their normalised text, cut to
:data:`HASH_CHARS` characters: equality is all the merge needs, and the
values themselves live in the mirror and on the server.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apexcal.ical.contentlines import Block, Line, parse
from apexcal.ical.fields import DONE_MARK
from apexcal.ical.ownership import main_component

WRITEBACK_FIELDS: tuple[str, ...] = ("done", "start", "end", "subject", "location")
"""The names ``writeback_fields`` accepts, in their canonical order."""

EDITABLE: tuple[str, ...] = ("start", "end", "subject", "location")
"""The fields taken back besides completion (which has its own rule, :mod:`apexcal.sync.writeback_policy`)."""

TIMING = frozenset({"start", "end"})

CRM_KEYS: Mapping[str, tuple[str, ...]] = {
    "start": ("start_date", "start_time"),
    "end": ("end_date", "end_time", "duration"),
    "subject": ("subject",),
    "location": ("location", "location_geocoded"),
}
"""The activity's API fields each editable field writes."""

HASH_CHARS = 24
PROBLEM = "!"
"""The first character of the normalised value of a timing apexcal cannot represent."""

_RECURRENCE = ("RRULE", "RDATE", "EXRULE")
_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DATE_TIME = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(Z?)$", re.IGNORECASE)
_DURATION = re.compile(
    r"^([+-])?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$", re.IGNORECASE
)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)

Point = date | datetime


class _Unrepresentable(ValueError):
    """A timing value apexcal cannot write as an activity (its text says why)."""


@dataclass(frozen=True, kw_only=True)
class Timing:
    """When an object happens: start and exclusive end, dates (all-day) or instants in the source zone.

    Both ``None``: a to-do without dates.
    """

    start: Point | None
    end: Point | None

    @property
    def all_day(self) -> bool:
        return self.start is not None and not isinstance(self.start, datetime)


@dataclass(frozen=True, kw_only=True)
class Editable:
    """The editable fields of one calendar object as read."""

    kind: Literal["VEVENT", "VTODO"]
    subject: str | None
    location: str | None
    timing: Timing | None
    """None when the object's timing cannot be written as an activity (``problem`` says why)."""
    problem: str | None = None
    raw_timing: str = ""
    """The object's timing lines as held (for a problem's value: a changed problem is a new one)."""

    def values(self) -> dict[str, str]:
        """The normalised value of each editable field (see the module docstring)."""
        if self.timing is None:
            bad = f"{PROBLEM}{self.problem}\n{self.raw_timing}"
            start = end = bad
        else:
            start, end = _point_text(self.timing.start), _point_text(self.timing.end)
        return {
            "start": start,
            "end": end,
            "subject": self.subject or "",
            "location": self.location or "",
        }


def _point_text(point: Point | None) -> str:
    if point is None:
        return ""
    return point.isoformat()


def value_hash(value: str) -> str:
    """The short hash of one normalised field value."""
    return hashlib.sha256(value.encode("utf-8", errors="surrogateescape")).hexdigest()[:HASH_CHARS]


def field_hashes(editable: Editable) -> dict[str, str]:
    """The hash of each editable field's normalised value (what an object record keeps)."""
    return {name: value_hash(value) for name, value in editable.values().items()}


def is_problem_hash(editable: Editable, name: str) -> bool:
    """Whether field ``name`` of ``editable`` is a timing apexcal cannot represent."""
    return name in TIMING and editable.timing is None


# --- reading ------------------------------------------------------------------------------


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: "\n" if m.group(1) in "nN" else m.group(1), text)


def _text(block: Block, name: str) -> str | None:
    line = block.first(name)
    if line is None:
        return None
    text = " ".join(_unescape(line.value).split())
    return text or None


def _zone(tzid: str) -> tzinfo:
    if tzid in ("UTC", "Etc/UTC", "Z", "GMT", "Etc/GMT"):
        return UTC
    try:
        return ZoneInfo(tzid.lstrip("/"))
    except (ZoneInfoNotFoundError, ValueError):
        raise _Unrepresentable(f"unknown TZID {tzid[:60]!r}") from None


def _point(line: Line, zone: tzinfo) -> Point:
    """A DTSTART/DTEND/DUE value: a date, or an instant expressed in ``zone``."""
    value = line.value.strip()
    kind = (line.param("VALUE") or [""])[0].upper()
    match = _DATE.match(value)
    if match is not None:
        if kind not in ("", "DATE"):
            raise _Unrepresentable(f"{line.name} {value[:40]!r} with VALUE={kind}")
        try:
            return date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            raise _Unrepresentable(f"{line.name} {value[:40]!r} is not a date") from None
    match = _DATE_TIME.match(value)
    if match is None or kind == "DATE":
        raise _Unrepresentable(f"{line.name} {value[:40]!r} is not a date or date-time")
    try:
        naive = datetime(
            int(match[1]), int(match[2]), int(match[3]), int(match[4]), int(match[5]), int(match[6])
        )
    except ValueError:
        raise _Unrepresentable(f"{line.name} {value[:40]!r} is not a date-time") from None
    if match[7]:
        instant = naive.replace(tzinfo=UTC)
    else:
        tzids = line.param("TZID")
        tzid = tzids[0] if tzids else None
        # Floating time: the wall time of the source zone (RFC 5545 §3.3.5 leaves it to us).
        instant = naive.replace(tzinfo=_zone(tzid) if tzid else zone)
    return instant.astimezone(zone)


def _duration(line: Line) -> timedelta:
    match = _DURATION.match(line.value.strip())
    if match is None:
        raise _Unrepresentable(f"DURATION {line.value.strip()[:40]!r} is not a duration")
    sign, weeks, days, hours, minutes, seconds = match.groups()
    length = timedelta(
        weeks=int(weeks or 0), days=int(days or 0), hours=int(hours or 0),
        minutes=int(minutes or 0), seconds=int(seconds or 0),
    )
    if sign == "-":
        raise _Unrepresentable("a negative DURATION")
    return length


def _plus(start: Point, length: timedelta) -> Point:
    if isinstance(start, datetime):
        tz = start.tzinfo
        assert tz is not None
        return (start.astimezone(UTC) + length).astimezone(tz)
    if length.seconds:
        raise _Unrepresentable("an all-day start with a DURATION of hours")
    return start + timedelta(days=length.days)


def _timing(component: Block, zone: tzinfo) -> Timing:
    for name in _RECURRENCE:
        if component.first(name) is not None:
            raise _Unrepresentable(f"{name} added (a CRM activity happens once)")
    todo = component.name == "VTODO"
    start_line = component.first("DTSTART")
    end_line = component.first("DUE" if todo else "DTEND")
    length_line = component.first("DURATION")
    start = _point(start_line, zone) if start_line is not None else None
    end = _point(end_line, zone) if end_line is not None else None
    if start is None and not todo:
        raise _Unrepresentable("no DTSTART")
    if todo and end is not None and not isinstance(end, datetime):
        end = end + timedelta(days=1)  # an all-day DUE is the last day itself
    if start is None:
        if end is None:
            return Timing(start=None, end=None)
        start = end - timedelta(days=1) if not isinstance(end, datetime) else end
    if end is None:
        if length_line is not None:
            end = _plus(start, _duration(length_line))
        else:
            end = start if isinstance(start, datetime) else start + timedelta(days=1)
    if isinstance(start, datetime) != isinstance(end, datetime):
        raise _Unrepresentable("an all-day start with a timed end, or the reverse")
    if _before(end, start):
        raise _Unrepresentable("an end before the start")
    for point in (start, end):
        if isinstance(point, datetime) and _repeated_wall_time(point):
            raise _Unrepresentable(
                f"{point.isoformat()} falls in the repeated hour of a DST change in the source time zone"
            )
    return Timing(start=start, end=end)


def _before(a: Point, b: Point) -> bool:
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a.astimezone(UTC) < b.astimezone(UTC)
    return a < b


def _repeated_wall_time(instant: datetime) -> bool:
    """Whether the instant's wall time in its zone is the second of two (fold=1 in a DST overlap)."""
    tz = instant.tzinfo
    assert tz is not None
    naive = instant.replace(tzinfo=None)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    return first != instant.astimezone(UTC)


def read_editable(data: bytes | str | Block, timezone: str, uid: str | None = None) -> Editable | None:
    """The editable fields of one calendar object; None when it has no VEVENT/VTODO.

    ``timezone`` is ``[source] timezone``: timed values are expressed in it,
    floating ones are read in it.
    """
    calendar = data if isinstance(data, Block) else parse(data)
    component = main_component(calendar, uid) if calendar.name == "VCALENDAR" else calendar
    if component is None or component.name not in ("VEVENT", "VTODO"):
        return None
    kind: Literal["VEVENT", "VTODO"] = "VTODO" if component.name == "VTODO" else "VEVENT"
    raw = "\n".join(
        line.text for line in component.lines()
        if line.name in ("DTSTART", "DTEND", "DUE", "DURATION", *_RECURRENCE)
    )
    subject, location = _text(component, "SUMMARY"), _text(component, "LOCATION")
    try:
        timing: Timing | None = _timing(component, _zone(timezone))
        problem = None
    except _Unrepresentable as exc:
        timing, problem = None, str(exc)
    return Editable(
        kind=kind, subject=subject, location=location, timing=timing, problem=problem, raw_timing=raw
    )


# --- converting back -----------------------------------------------------------------------


class NotWritable(ValueError):
    """A calendar value that cannot become the activity's field (its text says why)."""


def _hms(at: time) -> str:
    return at.strftime("%H:%M:%S")


def timing_patch(timing: Timing) -> dict[str, Any]:
    """The activity's date/time fields for a timing (all five keys; see :data:`CRM_KEYS`).

    Timed: wall dates and times in the source zone (the timing is expressed
    in it) and ``duration`` in whole minutes; all-day: dates only, with the
    end date the last day; no dates: all empty.
    """
    start, end = timing.start, timing.end
    if start is None or end is None:
        return {"start_date": None, "start_time": None, "end_date": None, "end_time": None, "duration": None}
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        last = max(end - timedelta(days=1), start)
        return {
            "start_date": start.isoformat(), "start_time": None,
            "end_date": last.isoformat(), "end_time": None, "duration": None,
        }
    minutes = int((end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() // 60)
    return {
        "start_date": start.date().isoformat(),
        "start_time": _hms(start.timetz()),
        "end_date": end.date().isoformat(),
        "end_time": _hms(end.timetz()),
        "duration": minutes,
    }


def subject_from(summary: str | None, rendered: str | None, crm_subject: str) -> str:
    """The subject a calendar SUMMARY says, given our rendering of the CRM's subject.

    Our rendering is the summary template filled in (and ``"✓ "`` before a
    done event's): the text around the subject in it must still be around
    it in the calendar's SUMMARY; what is between is the new subject.
    """
    new = (summary or "").removeprefix(DONE_MARK).strip()
    ours = (rendered or "").removeprefix(DONE_MARK).strip()
    subject = crm_subject.strip()
    if not subject or subject not in ours:
        if ours == new:
            raise NotWritable("SUMMARY unchanged")
        raise NotWritable("the summary template does not show the subject, so SUMMARY cannot be read back")
    prefix, _, suffix = ours.partition(subject)
    if not new.startswith(prefix) or not new.endswith(suffix) or len(new) < len(prefix) + len(suffix):
        raise NotWritable("SUMMARY no longer has the form of the summary template")
    taken = new[len(prefix) : len(new) - len(suffix)].strip()
    if not taken:
        raise NotWritable("an empty subject")
    return taken


def crm_patch(
    fields: Iterable[str], remote: Editable, rendered: Editable, crm_subject: str
) -> dict[str, Any]:
    """The activity's API fields for the editable ``fields`` as the calendar holds them.

    ``rendered`` is our rendering of the CRM's current state (for the summary
    template's text around the subject).  Raises :class:`NotWritable` naming
    the field when one cannot be written.
    """
    patch: dict[str, Any] = {}
    for name in fields:
        if name in TIMING:
            if remote.timing is None:
                raise NotWritable(f"{name}: {remote.problem}")
            whole = timing_patch(remote.timing)
            patch.update((key, whole[key]) for key in CRM_KEYS[name])
        elif name == "subject":
            try:
                patch["subject"] = subject_from(remote.subject, rendered.subject, crm_subject)
            except NotWritable as exc:
                raise NotWritable(f"subject: {exc}") from None
        elif name == "location":
            patch["location"] = remote.location
            patch["location_geocoded"] = None
        else:
            raise NotWritable(f"{name}: not an editable field")
    return patch
