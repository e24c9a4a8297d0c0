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
elsewhere in the object does not hide its completion state; bodies over
:data:`SCAN_ABOVE` are read by the scanner alone.  A :class:`RemoteParseError`
says what is wrong: an empty body, data that is not one complete VCALENDAR
(``truncated: no END:VCALENDAR``), no VTODO/VEVENT, no UID, components of
several UIDs, or several components of one UID without ``RECURRENCE-ID``
(RFC 4791 §4.1: one object, one UID, one master).
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
_FOLDED = re.compile(r"\r?\n[ \t]")
_MAIN = ("VTODO", "VEVENT")

SCAN_ABOVE = 256 * 1024
"""Bodies longer than this (characters) are read by the line scanner only.

icalendar needs about 45 s for a 7 MB object of a million short lines; the
scanner reads the few properties needed from it in about a second, so one
oversized object in a calendar cannot stall every cycle that reads it.
"""


def _scan_instant(value: str | None) -> datetime | None:
    match = _UTC_STAMP.match(value or "")
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _scanned_fields(kind: RemoteKind, values: dict[str, str]) -> _Fields:
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


def _scan(text: str) -> tuple[list[_Fields], list[bool]] | str:
    """Each VTODO/VEVENT's properties by plain line scanning (unfolded, parameters ignored).

    Returns the components and, for each, whether it has a ``RECURRENCE-ID``;
    or what is wrong when the text is not a complete VCALENDAR.
    """
    lines = _FOLDED.sub("", text).splitlines()
    stack: list[str] = []
    found: list[tuple[RemoteKind, dict[str, str]]] = []
    ended = False
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.split(";", 1)[0].strip().upper()
        if name == "BEGIN":
            block = value.strip().upper()
            if not stack and block != "VCALENDAR":
                return f"begins with BEGIN:{block[:40]}, not BEGIN:VCALENDAR"
            if ended:
                return "more than one VCALENDAR"
            if stack == ["VCALENDAR"] and block in _MAIN:
                found.append(("VTODO" if block == "VTODO" else "VEVENT", {}))
            stack.append(block)
        elif name == "END":
            block = value.strip().upper()
            if not stack or stack[-1] != block:
                return f"END:{block[:40]} does not close {stack[-1] if stack else 'anything'}"
            stack.pop()
            ended = ended or not stack
        elif len(stack) == 2 and stack[1] in _MAIN:
            found[-1][1].setdefault(name, value.strip())
    if not ended:
        return f"truncated: no END:{stack[0]}" if stack else "no BEGIN:VCALENDAR"
    return [_scanned_fields(k, v) for k, v in found], ["RECURRENCE-ID" in v for _, v in found]


def _what_is_wrong(text: str) -> str:
    """A short description of text that is not a calendar object at all."""
    if not text.strip():
        return "empty body"
    if "\ufffd" in text:
        return "not UTF-8 and not a readable calendar"
    scanned = _scan(text)
    return scanned if isinstance(scanned, str) else "not an iCalendar object"


def _one_object(href: str, fields: list[_Fields], overrides: list[bool]) -> _Fields:
    """The main component of a calendar object, which must hold one UID and at most one master."""
    if not fields:
        raise RemoteParseError(href, "no VEVENT or VTODO")
    uids = sorted({f.uid for f in fields if f.uid is not None})
    if len(uids) > 1:
        shown = ", ".join(u[:80] for u in uids[:3])
        raise RemoteParseError(href, f"components of {len(uids)} UIDs ({shown}): one object holds one UID")
    masters = [f for f, override in zip(fields, overrides, strict=True) if not override]
    if len(masters) > 1:
        uid = (uids[0] if uids else "none")[:80]
        raise RemoteParseError(href, f"{len(masters)} components of UID {uid} without RECURRENCE-ID")
    return (masters or fields)[0]


def _fields(href: str, text: str) -> _Fields:
    if len(text) > SCAN_ABOVE:
        scanned = _scan(text)
        if isinstance(scanned, str):
            raise RemoteParseError(href, f"{len(text)} characters, {scanned}")
        return _one_object(href, *scanned)
    try:
        calendar = Calendar.from_ical(text)
    except Exception:  # icalendar raises many types on malformed input
        scanned = _scan(text)
        if isinstance(scanned, str) or not scanned[0]:
            raise RemoteParseError(href, _what_is_wrong(text)) from None
        # One malformed value (COMPLETED:yesterday, a broken DTSTART): read the rest by lines.
        return _one_object(href, *scanned)
    if calendar.name != "VCALENDAR":
        raise RemoteParseError(href, f"a {calendar.name[:40]}, not a VCALENDAR")
    found = [c for c in calendar.subcomponents if c.name in _MAIN]
    return _one_object(href, [_from_component(c) for c in found], ["RECURRENCE-ID" in c for c in found])


def _positive(value: int | None) -> int | None:
    return value if value is not None and value > 0 else None


def read_remote(href: str, data: bytes | str) -> RemoteObject:
    """The identity and completion state of one remote calendar object (rules in the module docstring)."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    text = text.removeprefix("\ufeff")  # a byte order mark some clients write first
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
