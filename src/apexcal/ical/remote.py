"""Reading back what a CalDAV server holds: whose object, and is it done?

Objects on a server may have been edited by any client, or be malformed.
:func:`read_remote` is tolerant of both: it never crashes, it raises
:class:`~apexcal.errors.RemoteParseError` naming the href when the data is
not a calendar object it can read.

Completion rules (for VTODO; a VEVENT is never "done"):

- ``STATUS:NEEDS-ACTION`` or ``STATUS:IN-PROCESS`` → not done, whatever
  stale ``COMPLETED``/``PERCENT-COMPLETE`` a client left behind (the user
  unticked it).
- ``STATUS:CANCELLED`` → not done, reported with ``status="CANCELLED"`` so
  the sync engine can ignore it: cancelling a to-do in a calendar app is not
  completing the CRM activity.
- Otherwise done when ``STATUS:COMPLETED``, a ``COMPLETED`` property (even
  one whose value cannot be read) or ``PERCENT-COMPLETE:100`` is present —
  this covers tasks.org (all three), Thunderbird (COMPLETED with X-MOZ-*
  properties) and clients that set only PERCENT-COMPLETE.

The activity id comes from our UID, else from ``X-APEX-ACTIVITY-ID``.

When icalendar refuses an object because one value is malformed (a client
wrote ``COMPLETED:yesterday`` or a broken DTSTART), a line scanner reads the
few properties above from the first VTODO/VEVENT instead, so one bad value
elsewhere in the object does not hide its completion state.  Only data with
no VCALENDAR, no VTODO/VEVENT or no UID is a :class:`RemoteParseError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from icalendar import Calendar, Component

from apexcal.errors import RemoteParseError
from apexcal.ical.mapping import parse_uid

RemoteKind = Literal["VEVENT", "VTODO"]
_NOT_DONE = frozenset({"NEEDS-ACTION", "IN-PROCESS", "CANCELLED"})


@dataclass(frozen=True, kw_only=True)
class RemoteObject:
    """What we need to know about one object found on a server."""

    href: str
    uid: str
    activity_id: int | None
    organization_id: int | None
    kind: RemoteKind
    done: bool
    status: str | None
    completed: datetime | None
    percent: int | None
    last_modified: datetime | None


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def _decoded(component: Component, name: str) -> Any:
    if name not in component:
        return None
    try:
        return component.decoded(name)
    except Exception:
        return None


def _text(component: Component, name: str) -> str | None:
    value = component.get(name)
    if value is None or isinstance(value, list):
        return None
    return str(value).strip() or None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _main_component(calendar: Component) -> Component | None:
    found = [c for c in calendar.subcomponents if c.name in ("VEVENT", "VTODO")]
    masters = [c for c in found if "RECURRENCE-ID" not in c]
    candidates = masters or found
    return candidates[0] if candidates else None


@dataclass(frozen=True, kw_only=True)
class _Fields:
    kind: RemoteKind
    uid: str | None
    status: str | None
    has_completed: bool
    completed: datetime | None
    percent: str | None
    last_modified: datetime | None
    activity_id: str | None
    organization_id: str | None


def _from_component(component: Component) -> _Fields:
    return _Fields(
        kind="VTODO" if component.name == "VTODO" else "VEVENT",
        uid=_text(component, "UID"),
        status=_text(component, "STATUS"),
        has_completed="COMPLETED" in component,
        completed=_instant(_decoded(component, "COMPLETED")),
        percent=_text(component, "PERCENT-COMPLETE"),
        last_modified=_instant(_decoded(component, "LAST-MODIFIED")),
        activity_id=_text(component, "X-APEX-ACTIVITY-ID"),
        organization_id=_text(component, "X-APEX-ORGANIZATION-ID"),
    )


_UTC_STAMP = re.compile(r"^(\d{8}T\d{6})Z?$")


def _scan_instant(value: str | None) -> datetime | None:
    match = _UTC_STAMP.match(value or "")
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _scan(text: str) -> _Fields | None:
    """The first VTODO/VEVENT's properties by plain line scanning (unfolded, parameters ignored)."""
    lines = re.sub(r"\r?\n[ \t]", "", text).splitlines()
    upper = [line.strip().upper() for line in lines]
    if "BEGIN:VCALENDAR" not in upper or "END:VCALENDAR" not in upper:
        return None  # not a calendar, or a truncated one
    kind: RemoteKind | None = None
    closed = False
    depth = 0
    values: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.split(";", 1)[0].strip().upper()
        if kind is None:
            if name == "BEGIN" and value.strip().upper() in ("VTODO", "VEVENT"):
                kind = "VTODO" if value.strip().upper() == "VTODO" else "VEVENT"
            continue
        if name == "BEGIN":
            depth += 1
        elif name == "END":
            if depth == 0:
                closed = True
                break
            depth -= 1
        elif depth == 0:
            values.setdefault(name, value.strip())
    if kind is None or not closed:
        return None
    return _Fields(
        kind=kind,
        uid=values.get("UID") or None,
        status=values.get("STATUS") or None,
        has_completed="COMPLETED" in values,
        completed=_scan_instant(values.get("COMPLETED")),
        percent=values.get("PERCENT-COMPLETE"),
        last_modified=_scan_instant(values.get("LAST-MODIFIED")),
        activity_id=values.get("X-APEX-ACTIVITY-ID"),
        organization_id=values.get("X-APEX-ORGANIZATION-ID"),
    )


def _fields(href: str, text: str) -> _Fields:
    try:
        calendar = Calendar.from_ical(text)
    except Exception as exc:  # icalendar raises many types on malformed input
        scanned = _scan(text)
        if scanned is None:
            raise RemoteParseError(href, f"not an iCalendar object: {type(exc).__name__}") from None
        return scanned
    if calendar.name != "VCALENDAR":
        raise RemoteParseError(href, "not a single VCALENDAR")
    component = _main_component(calendar)
    if component is None:
        raise RemoteParseError(href, "no VEVENT or VTODO")
    return _from_component(component)


def _positive(value: int | None) -> int | None:
    return value if value is not None and value > 0 else None


def read_remote(href: str, data: bytes | str) -> RemoteObject:
    """The identity and completion state of one remote calendar object (rules in the module docstring)."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    fields = _fields(href, text)
    if fields.uid is None:
        raise RemoteParseError(href, "no UID")
    ids = parse_uid(fields.uid)
    organization_id = ids[0] if ids else _int(fields.organization_id)
    activity_id = ids[1] if ids else _int(fields.activity_id)
    status = fields.status.upper() if fields.status else None
    percent = _int(fields.percent)
    done = (
        fields.kind == "VTODO"
        and status not in _NOT_DONE
        and (status == "COMPLETED" or fields.has_completed or percent == 100)
    )
    return RemoteObject(
        href=href,
        uid=fields.uid,
        activity_id=_positive(activity_id),
        organization_id=_positive(organization_id),
        kind=fields.kind,
        done=done,
        status=status,
        completed=fields.completed,
        percent=percent,
        last_modified=fields.last_modified,
    )
