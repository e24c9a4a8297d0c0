"""apexcal's own reminders: VALARMs from a list of triggers, per activity type.

A trigger is text, as written in ``[mapping.alarms]`` (``meeting = ["-15m"]``,
``task = ["09:00"]``):

- **Relative**: a signed offset from the start of an event or the due time of
  a to-do, in weeks, days, hours and minutes: ``-15m`` (15 minutes before),
  ``-1h30m``, ``-2d``, ``+10m`` (after), ``0m`` (at the time).  An unsigned
  non-zero offset is refused: "15m" could mean either side.  RFC 5545
  durations are read too (``-PT15M``, ``-P1DT2H``, ``-P1W``), in whole
  minutes.
- **Absolute**: ``HH:MM`` on the day the activity is due (a to-do's DUE day,
  an event's start day), as a wall time in the source time zone; written as
  a UTC date-time (RFC 5545 §3.8.6.3 wants absolute triggers in UTC).  A time
  in the DST gap moves forward by the gap, like the mapping's own times.

Each alarm is ``ACTION:DISPLAY`` with the component's SUMMARY as its text,
carries the marker ``X-APEX-ALARM`` (the trigger in canonical form) and an
RFC 9074 ``UID`` derived from the object's UID and the canonical trigger:
``apexcal-alarm-<24 hex>@<domain of the object UID>``.  So the same trigger
on the same activity keeps its UID across renderings (a client's
``ACKNOWLEDGED`` on it survives a merge), ``-60m`` and ``-1h`` are one alarm,
and :mod:`apexcal.ical.merge` updates or removes only these alarms, never a
user's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from apexcal.errors import TriggerError

if TYPE_CHECKING:
    from icalendar import Alarm, Component

# What builds alarms (icalendar, the time zones, the ownership rules) is imported
# where alarms are built: the config reads triggers (parse_trigger) without it.

_RELATIVE = re.compile(r"^([+-]?)((?:\d+[wdhm])+)$")
_PART = re.compile(r"(\d+)([wdhm])")
_ABSOLUTE = re.compile(r"^(\d{1,2}):(\d{2})$")
_ISO = re.compile(r"^([+-]?)p(?:(\d+)w)?(?:(\d+)d)?(?:t(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?)?$")
_UNIT = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
_MAX_OFFSET = timedelta(weeks=52)

DEFAULT_KEY = "default"
"""The key of an alarm table whose triggers apply to every type not listed."""



@dataclass(frozen=True, kw_only=True)
class Trigger:
    """One parsed trigger: an ``offset`` from start/due, or a wall time ``at`` on the due day."""

    offset: timedelta | None = None
    at: time | None = None

    @property
    def key(self) -> str:
        """The canonical text: ``-15m``, ``+1d2h``, ``0m``, ``09:00``."""
        if self.at is not None:
            return f"{self.at.hour:02d}:{self.at.minute:02d}"
        assert self.offset is not None
        minutes = int(abs(self.offset).total_seconds()) // 60
        if minutes == 0:
            return "0m"
        parts = []
        for unit, size in (("w", 10080), ("d", 1440), ("h", 60), ("m", 1)):
            count, minutes = divmod(minutes, size)
            if count:
                parts.append(f"{count}{unit}")
        return ("-" if self.offset < timedelta(0) else "+") + "".join(parts)


def parse_trigger(text: str) -> Trigger:
    """Read one trigger (rules in the module docstring); :class:`TriggerError` when it is not one.

    For config validation too: call it on each configured trigger at load
    time to report a bad one with its key path.
    """
    cleaned = text.strip().lower()
    absolute = _ABSOLUTE.match(cleaned)
    if absolute:
        hour, minute = int(absolute.group(1)), int(absolute.group(2))
        if hour > 23 or minute > 59:
            raise TriggerError(text, "not a time of day (HH:MM, 00:00 to 23:59)")
        return Trigger(at=time(hour, minute))
    iso = _ISO.match(cleaned)
    if iso and any(iso.groups()[1:]) and not cleaned.endswith("t"):
        sign, weeks, days, hours, minutes, seconds = iso.groups()
        if int(seconds or 0) % 60:
            raise TriggerError(text, "whole minutes only")
        total = int(weeks or 0) * 10080 + int(days or 0) * 1440 + int(hours or 0) * 60 + int(minutes or 0)
        total += int(seconds or 0) // 60
        cleaned = f"{sign}{total}m"
    relative = _RELATIVE.match(cleaned)
    if relative is None:
        raise TriggerError(text, 'write an offset such as "-15m", "-1h30m", "-2d", "+10m", or a time such as "09:00"')
    sign, body = relative.groups()
    size = sum((int(count) * _UNIT[unit] for count, unit in _PART.findall(body)), timedelta(0))
    if size and not sign:
        raise TriggerError(text, f'say which side: "-{body}" before or "+{body}" after')
    if size > _MAX_OFFSET:
        raise TriggerError(text, "more than 52 weeks away")
    return Trigger(offset=-size if sign == "-" else size)


def triggers_for(table: Iterable[tuple[str, Iterable[str]]], type_key: str | None) -> tuple[str, ...]:
    """The triggers of an activity type in an alarm table (type key → triggers; ``default`` for the rest)."""
    found = dict(table)
    if type_key is not None and type_key in found:
        return tuple(found[type_key])
    return tuple(found.get(DEFAULT_KEY, ()))


def alarm_uid(object_uid: str, trigger: Trigger) -> str:
    """The RFC 9074 UID of our alarm for ``trigger`` on the object ``object_uid`` (stable, deterministic)."""
    from apexcal.ical.ownership import ALARM_UID_PREFIX

    digest = hashlib.sha256(f"{object_uid}\x00{trigger.key}".encode()).hexdigest()[:24]
    domain = object_uid.rpartition("@")[2] or "apexcal"
    return f"{ALARM_UID_PREFIX}{digest}@{domain}"


def _value(component: Component, name: str) -> date | datetime | None:
    if name not in component:
        return None
    value = component.decoded(name)
    return value if isinstance(value, date) else None


def _day(value: date | datetime, timezone: str) -> date:
    from apexcal.ical.times import is_utc
    from apexcal.ical.timezones import zone_for

    if not isinstance(value, datetime):
        return value
    if value.tzinfo is None:
        return value.date()
    return value.astimezone(UTC if is_utc(timezone) else zone_for(timezone)).date()


def _instant(day: date, at: time, timezone: str) -> datetime:
    from apexcal.ical.times import is_utc
    from apexcal.ical.timezones import zone_for

    zone = UTC if is_utc(timezone) else zone_for(timezone)
    # fold=0: a gap time resolves with the offset before the gap, i.e. moves forward by it.
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def alarms_for(component: Component, triggers: Iterable[str | Trigger], *, timezone: str) -> list[Alarm]:
    """apexcal's VALARMs for a mapped VEVENT/VTODO and the triggers configured for its type.

    ``component`` is the mapping's VEVENT or VTODO (its UID, SUMMARY,
    DTSTART and DUE are read); ``timezone`` is the source time zone (the one
    the mapping was given).  Relative triggers are ``RELATED=START`` on an
    event, ``RELATED=END`` (the DUE) on a to-do with a DUE, ``RELATED=START``
    on a to-do with only a DTSTART; absolute ones fall on the to-do's DUE day
    (else its DTSTART day) or the event's start day.  A to-do with neither
    date gets no alarm.  Duplicates (``-60m`` and ``-1h``) give one alarm.
    The caller adds the alarms to the component (``component.add_component``)
    before serialising; order follows ``triggers``.  Raises
    :class:`TriggerError` for a trigger that cannot be read.
    """
    from icalendar import Alarm

    from apexcal.ical.ownership import ALARM_MARKER

    uid = str(component.get("UID", ""))
    summary = str(component.get("SUMMARY", "")) or "Reminder"
    start = _value(component, "DTSTART")
    due = _value(component, "DUE") if component.name == "VTODO" else None
    anchor = due or start
    if anchor is None:
        return []
    alarms: list[Alarm] = []
    seen: set[str] = set()
    for item in triggers:
        trigger = item if isinstance(item, Trigger) else parse_trigger(item)
        if trigger.key in seen:
            continue
        seen.add(trigger.key)
        when: timedelta | datetime
        if trigger.at is not None:
            when = _instant(_day(anchor, timezone), trigger.at, timezone)
        else:
            assert trigger.offset is not None
            when = trigger.offset
        alarm = Alarm.new_display(description=summary, trigger=when, uid=alarm_uid(uid, trigger))
        if isinstance(when, timedelta):
            alarm["TRIGGER"].params["RELATED"] = "END" if due is not None else "START"
        else:
            alarm["TRIGGER"].params["VALUE"] = "DATE-TIME"  # TRIGGER's default type is DURATION
        alarm.add(ALARM_MARKER, trigger.key)
        alarms.append(alarm)
    return alarms
