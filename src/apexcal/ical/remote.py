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
"""

from __future__ import annotations

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


def read_remote(href: str, data: bytes | str) -> RemoteObject:
    """The identity and completion state of one remote calendar object (rules in the module docstring)."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    try:
        calendar = Calendar.from_ical(text)
    except Exception as exc:
        raise RemoteParseError(href, f"not an iCalendar object: {type(exc).__name__}") from None
    if calendar.name != "VCALENDAR":
        raise RemoteParseError(href, "not a single VCALENDAR")
    component = _main_component(calendar)
    if component is None:
        raise RemoteParseError(href, "no VEVENT or VTODO")
    uid = _text(component, "UID")
    if uid is None:
        raise RemoteParseError(href, "no UID")
    ids = parse_uid(uid)
    organization_id = ids[0] if ids else _int(_text(component, "X-APEX-ORGANIZATION-ID"))
    activity_id = ids[1] if ids else _int(_text(component, "X-APEX-ACTIVITY-ID"))
    status = _text(component, "STATUS")
    status = status.upper() if status else None
    percent = _int(_text(component, "PERCENT-COMPLETE"))
    kind: RemoteKind = "VTODO" if component.name == "VTODO" else "VEVENT"
    done = (
        kind == "VTODO"
        and status not in _NOT_DONE
        and (status == "COMPLETED" or "COMPLETED" in component or percent == 100)
    )
    return RemoteObject(
        href=href,
        uid=uid,
        activity_id=activity_id if activity_id and activity_id > 0 else None,
        organization_id=organization_id if organization_id and organization_id > 0 else None,
        kind=kind,
        done=done,
        status=status,
        completed=_instant(_decoded(component, "COMPLETED")),
        percent=percent,
        last_modified=_instant(_decoded(component, "LAST-MODIFIED")),
    )
