"""Which parts of a calendar object are apexcal's: the one list, and a hash over them.

The CRM owns content; the calendar's user owns everything else in the object
(DESIGN §5, "Ownership").  apexcal owns:

- **Per component, the properties the mapping writes** (:data:`OWNED`), plus
  those that would contradict them if a client's copy survived next to ours:
  ``DURATION`` (excludes ``DTEND``/``DUE``), the recurrence properties
  (``RRULE``, ``RDATE``, ``EXDATE``, ``EXRULE``: a CRM activity happens once)
  and ``X-ALT-DESC`` (the HTML twin of ``DESCRIPTION``, which clients prefer
  when present).  Owned means owned whether present or not: a property of the
  list that our rendering leaves out (``DESCRIPTION`` under ``busy``
  privacy) is removed from the server's copy.
- **Every ``X-APEX-*`` property**, wherever it is.
- **Marked instances.**  ``ATTENDEE`` and ``ORGANIZER`` lines carrying the
  parameter ``X-APEX-OWNED=TRUE`` (:data:`MARK_PARAM`); unmarked ones are
  the user's (people they invited).
- **apexcal's own VALARMs**: those carrying an ``X-APEX-ALARM`` property, or
  an RFC 9074 ``UID`` (or Apple's ``X-WR-ALARMUID`` copy of it) starting
  with ``apexcal-alarm-`` — so an alarm whose marker a client dropped is
  still recognised.  Inside them apexcal owns :data:`OWNED` ``["VALARM"]``;
  an ``ACKNOWLEDGED`` a client added is the user's.  Every other VALARM is
  the user's.
- **VTIMEZONE** blocks are not owned property by property: an object carries
  exactly one VTIMEZONE for each TZID its lines use, ours when our rendering
  has one for that TZID, else the one the server held.
- **VCALENDAR**: ``VERSION``, ``PRODID``, ``CALSCALE``.  Other calendar-level
  properties and unknown components are the user's.

:func:`owned_hash` is the content hash that decides "nothing to do": it
covers the owned properties of the object's VEVENT/VTODO and of apexcal's
VALARMs only, normalised so that what servers do to stored objects does not
change it (see its docstring).  A user's additions never change it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from types import MappingProxyType

from apexcal.ical.contentlines import Block, Line, parse

OWNED_PREFIX = "X-APEX-"
"""Every property whose name starts with this is apexcal's, in any component."""

ALARM_MARKER = "X-APEX-ALARM"
"""The property that marks a VALARM as apexcal's."""

ALARM_UID_PREFIX = "apexcal-alarm-"
"""The RFC 9074 ``UID`` of apexcal's VALARMs starts with this."""

MARK_PARAM = "X-APEX-OWNED"
"""Parameter (value ``TRUE``) marking an ``ATTENDEE``/``ORGANIZER`` line as apexcal's."""

MARKED = frozenset({"ATTENDEE", "ORGANIZER"})
"""Properties owned line by line, by :data:`MARK_PARAM`."""

MAIN_COMPONENTS = frozenset({"VEVENT", "VTODO"})

_TIMING = frozenset({"DTSTART", "DURATION", "RRULE", "RDATE", "EXDATE", "EXRULE"})
_COMMON = _TIMING | frozenset(
    {
        "UID",
        "DTSTAMP",
        "CREATED",
        "LAST-MODIFIED",
        "SEQUENCE",
        "SUMMARY",
        "DESCRIPTION",
        "X-ALT-DESC",
        "LOCATION",
        "GEO",
        "X-APPLE-STRUCTURED-LOCATION",
        "CONFERENCE",
        "URL",
        "CATEGORIES",
        "COLOR",
        "CLASS",
    }
)

OWNED: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "VCALENDAR": frozenset({"VERSION", "PRODID", "CALSCALE"}),
        "VEVENT": _COMMON | {"DTEND"},
        "VTODO": _COMMON | {"DUE", "STATUS", "COMPLETED", "PERCENT-COMPLETE"},
        "VALARM": frozenset(
            {"UID", "ACTION", "TRIGGER", "DESCRIPTION", "SUMMARY", "REPEAT", "DURATION", "ATTACH", "ATTENDEE"}
        ),
    }
)
"""Owned property names per component (``VALARM``: inside apexcal's own alarms only)."""


def is_owned(component: str, prop: str) -> bool:
    """Whether apexcal owns property ``prop`` of ``component`` by name (case-insensitive).

    ``ATTENDEE``/``ORGANIZER`` are owned line by line (see :func:`is_owned_line`),
    so they are ``False`` here; so is anything of a component not in
    :data:`OWNED` (VTIMEZONE follows its own rule, unknown components are the
    user's).
    """
    name = prop.upper()
    comp = component.upper()
    if comp not in OWNED:
        return False
    if name.startswith(OWNED_PREFIX):
        return True
    if comp == "VALARM":
        return name in OWNED["VALARM"]
    return name in OWNED[comp] and name not in MARKED


def is_marked(line: Line) -> bool:
    """Whether a line carries ``X-APEX-OWNED=TRUE``."""
    values = line.param(MARK_PARAM)
    return values is not None and [v.upper() for v in values] == ["TRUE"]


def is_owned_line(component: str, line: Line) -> bool:
    """Whether apexcal owns this content line of ``component`` (names, prefix and marks)."""
    comp = component.upper()
    if line.name in MARKED and comp in MAIN_COMPONENTS:
        return is_marked(line)
    return is_owned(comp, line.name)


def alarm_uid(alarm: Block) -> str | None:
    """A VALARM's RFC 9074 ``UID`` (else Apple's ``X-WR-ALARMUID``), or ``None``."""
    return alarm.value("UID") or alarm.value("X-WR-ALARMUID") or None


def is_apex_alarm(alarm: Block) -> bool:
    """Whether a VALARM is apexcal's: marked with ``X-APEX-ALARM`` or with one of our alarm UIDs."""
    if alarm.name != "VALARM":
        return False
    if alarm.first(ALARM_MARKER) is not None:
        return True
    return any(
        (value or "").startswith(ALARM_UID_PREFIX)
        for value in (alarm.value("UID"), alarm.value("X-WR-ALARMUID"))
    )


def main_component(calendar: Block, uid: str | None = None) -> Block | None:
    """The object's VEVENT/VTODO: the master with ``uid`` when given and present, else the first master."""
    found = [b for b in calendar.blocks() if b.name in MAIN_COMPONENTS and b.first("RECURRENCE-ID") is None]
    if uid is not None:
        for block in found:
            if block.value("UID") == uid:
                return block
    return found[0] if found else None


def owned_view(component: Block) -> Block:
    """A copy of a component holding only what apexcal owns in it.

    For a VEVENT/VTODO: its owned lines and apexcal's VALARMs (each reduced to
    its owned lines); for a VALARM: its owned lines; for a VCALENDAR: its
    owned lines and the owned view of its VEVENT/VTODO (VTIMEZONEs follow from
    the TZIDs used, so they are left out).
    """
    name = component.name
    items: list[Line | Block] = [line for line in component.lines() if is_owned_line(name, line)]
    if name == "VCALENDAR":
        main = main_component(component)
        if main is not None:
            items.append(owned_view(main))
    elif name in MAIN_COMPONENTS:
        items.extend(owned_view(alarm) for alarm in component.blocks("VALARM") if is_apex_alarm(alarm))
    return Block(name=name, begin=f"BEGIN:{name}", end=f"END:{name}", items=items)


# --- the owned-properties hash ------------------------------------------------

_NOT_TEXT = frozenset(
    {
        "URL", "CONFERENCE", "X-APPLE-STRUCTURED-LOCATION", "ATTENDEE", "ORGANIZER", "ATTACH",
        "DTSTART", "DTEND", "DUE", "DTSTAMP", "CREATED", "LAST-MODIFIED", "COMPLETED", "RECURRENCE-ID",
        "GEO", "TRIGGER", "DURATION", "RRULE", "EXRULE", "RDATE", "EXDATE", "SEQUENCE",
        "PERCENT-COMPLETE", "REPEAT", "PRIORITY",
    }
)  # properties whose value is not TEXT: backslashes in them are not escapes
_LISTS = frozenset({"CATEGORIES", "RESOURCES"})
_DATE_LISTS = frozenset({"RDATE", "EXDATE"})
_ENUM_VALUES = frozenset({"STATUS", "CLASS", "ACTION", "TRANSP"})
_ENUM_PARAMS = frozenset(
    {
        "VALUE", "FEATURE", "RELATED", "RELTYPE", "ROLE", "PARTSTAT", "CUTYPE", "RSVP",
        "SCHEDULE-AGENT", "ENCODING", "FBTYPE", "RANGE", "FMTTYPE", MARK_PARAM,
    }
)
# A VALUE parameter naming the property's only (or default) type says nothing;
# servers add or drop it.  DATE, PERIOD and BINARY change the meaning and stay.
_DEFAULT_VALUES = frozenset(
    {"DATE-TIME", "TEXT", "URI", "DURATION", "INTEGER", "FLOAT", "CAL-ADDRESS", "RECUR", "BOOLEAN", "UTC-OFFSET"}
)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_DURATION = re.compile(
    r"^([+-])?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$", re.IGNORECASE
)
_GEO_URI = re.compile(r"^geo:\s*([+-]?[0-9.]+)\s*$", re.IGNORECASE)


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: "\n" if m.group(1) in "nN" else m.group(1), text)


def _split_unescaped(text: str, sep: str = ",") -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            current.append(char + next(chars, ""))
        elif char == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _six(number: str) -> str:
    try:
        return f"{float(number):.6f}"
    except ValueError:
        return number.strip()


def _duration(text: str) -> str:
    match = _DURATION.match(text.strip())
    if match is None:
        return text.strip()
    sign, weeks, days, hours, minutes, seconds = match.groups()
    total = (
        int(weeks or 0) * 604800 + int(days or 0) * 86400 + int(hours or 0) * 3600
        + int(minutes or 0) * 60 + int(seconds or 0)
    )
    return str(-total if sign == "-" else total)


def _value(name: str, value: str, params: Mapping[str, str]) -> str | list[str]:
    value = value.strip()
    if name == "GEO":
        lat, sep, lon = value.partition(";")
        return f"{_six(lat)};{_six(lon)}" if sep else value
    if name == "X-APPLE-STRUCTURED-LOCATION":
        # Radicale (vobject) cuts this value at its comma: compare the latitude only.
        head = value.split(",", 1)[0]
        match = _GEO_URI.match(head)
        return f"geo:{_six(match.group(1))}" if match else head
    if name in ("TRIGGER", "DURATION") and params.get("VALUE") != "DATE-TIME":
        return _duration(value)
    if name in _DATE_LISTS:
        return sorted(v.strip() for v in value.split(","))
    if name in _NOT_TEXT:
        return value
    if name in _LISTS:
        return [_unescape(part) for part in _split_unescaped(value)]
    text = _unescape(value)
    return text.upper() if name in _ENUM_VALUES else text


def canonical_line(line: Line) -> tuple[object, ...]:
    """A line in a form that servers' rewriting does not change (see :func:`owned_hash`)."""
    name, raw_params, value = line.split()
    params: dict[str, str] = {}
    for key, values in raw_params:
        if key in _ENUM_PARAMS:
            params[key] = ",".join(sorted(v.strip().upper() for v in values))
        else:
            params[key] = ",".join(values)
    if params.get("VALUE") in _DEFAULT_VALUES:
        del params["VALUE"]
    found = _value(name, value, params)
    return (name, tuple(sorted(params.items())), found if isinstance(found, str) else tuple(found))


def _canonical(block: Block) -> str:
    # repr of tuples of str is exact and stable, and much faster than JSON here.
    lines = sorted(repr(canonical_line(line)) for line in block.lines())
    blocks = sorted(_canonical(child) for child in block.blocks())
    return repr((block.name, tuple(lines), tuple(blocks)))


def owned_hash(data: bytes | str | Block) -> str:
    """The sha256 hex digest of what apexcal owns in one calendar object.

    Covers the owned properties of the object's VEVENT/VTODO and of apexcal's
    VALARMs (not VTIMEZONE definitions, which follow from the TZIDs used, and
    not the VCALENDAR's ``PRODID``, which names our version).  Normalised, a
    superset of the sync engine's byte-level ``semantic_hash``:

    - line folding, line endings and surrounding whitespace;
    - property order, parameter order, the order of VALARMs;
    - parameter quoting and the case of names and enumerated parameter
      values (Cyrus re-quotes, Radicale re-serialises);
    - a ``VALUE`` parameter naming the default type (``VALUE=DATE-TIME``);
    - TEXT escapes (``\\,`` vs ``,``, ``\\N`` vs ``\\n``);
    - ``GEO`` at 6 decimals (Cyrus keeps 6), Apple's structured location cut
      at its comma (Radicale cuts it there);
    - ``TRIGGER``/``DURATION`` as seconds (``-PT15M`` = ``-PT0H15M0S``).

    Anything the user adds (their alarms, acknowledgements, X- properties,
    unmarked attendees) leaves it unchanged.
    """
    calendar = data if isinstance(data, Block) else parse(data)
    main = main_component(calendar) if calendar.name == "VCALENDAR" else calendar
    view = "" if main is None else _canonical(owned_view(main))
    return hashlib.sha256(view.encode("utf-8", errors="surrogateescape")).hexdigest()


def owned_changes(current: bytes | str | Block, desired: bytes | str | Block) -> list[str]:
    """The names of owned properties that differ between two objects (sorted; ``VALARM`` for alarms).

    For a dry run's "update, changing SUMMARY, DTSTART"; empty when their
    :func:`owned_hash` values are equal.
    """

    def by_name(data: bytes | str | Block) -> tuple[str | None, dict[str, list[str]], list[str]]:
        calendar = data if isinstance(data, Block) else parse(data)
        main = main_component(calendar) if calendar.name == "VCALENDAR" else calendar
        if main is None:
            return None, {}, []
        view = owned_view(main)
        props: dict[str, list[str]] = {}
        for line in view.lines():
            props.setdefault(line.name, []).append(repr(canonical_line(line)))
        alarms = sorted(_canonical(alarm) for alarm in view.blocks())
        return main.name, {k: sorted(v) for k, v in props.items()}, alarms

    kind_a, props_a, alarms_a = by_name(current)
    kind_b, props_b, alarms_b = by_name(desired)
    changed: set[str] = {"BEGIN"} if kind_a != kind_b else set()
    changed.update(name for name in props_a.keys() | props_b.keys() if props_a.get(name) != props_b.get(name))
    if alarms_a != alarms_b:
        changed.add("VALARM")
    return sorted(changed)

