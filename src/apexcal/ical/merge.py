"""Merge instead of replace: our rendering laid over the server's copy of an object.

apexcal owns a listed set of properties (:mod:`apexcal.ical.ownership`); the
calendar's user owns the rest.  :func:`merge` starts from the server's
current copy and replaces only what is ours, so everything else stays exactly
as the server holds it: the user's VALARMs, alarm acknowledgements and
snoozes (``ACKNOWLEDGED``, ``X-MOZ-LASTACK``, ``X-MOZ-SNOOZE-TIME*``),
``X-APPLE-*`` and other clients' X- properties, attendees the user invited,
``RELATED-TO``, unknown components.  It works on content lines
(:mod:`apexcal.ical.contentlines`), not through icalendar's parse/serialise
round trip, which would re-fold, re-quote and re-order the user's lines: a
line we keep is written out as it was read, folding included.

The result, component by component:

- **VCALENDAR**: our calendar properties, then the server's other calendar
  properties; then the VTIMEZONEs (below); then the merged VEVENT/VTODO; then
  every other component the server holds, in its order.
- **VEVENT/VTODO** (the master with our UID): our lines, then the server's
  lines that are not owned; then our VALARMs, each merged with the server's
  copy of it (same RFC 9074 ``UID``: our alarm lines, then what a client added
  to it, such as ``ACKNOWLEDGED`` or ``X-WR-ALARMUID``); then the server's
  other sub-components (the user's VALARMs) in their order.  apexcal's alarms
  we no longer render are removed.  A property our rendering writes is ours
  even if the ownership list missed it, so nothing is ever duplicated;
  ``ATTENDEE``/``ORGANIZER`` lines we write (marked ``X-APEX-OWNED=TRUE``)
  replace a user's line for the same address, and our ``ORGANIZER`` replaces
  theirs (there can be only one).
- **Recurrence**: a CRM activity happens once, so ``RRULE``/``RDATE``/
  ``EXDATE`` are owned (removed) and the server's overrides of our UID (a
  component with ``RECURRENCE-ID``) are dropped with them.
- **Component kind changed** (``tasks_as`` switched VTODO ↔ VEVENT): our
  component, plus the user's X- properties, the properties valid in both
  kinds (``RELATED-TO``, ``ATTENDEE``, ``COMMENT``, ``PRIORITY``…) and their
  sub-components; the rest (``TRANSP``…) is not valid in the new kind and
  is dropped.
- **VTIMEZONE**: exactly one for each TZID used anywhere in the result, ours
  when our rendering carries it, else the server's; the server's VTIMEZONEs
  no line uses any longer are dropped.

When the server's copy holds nothing that is not ours, the result is our
rendering byte for byte.  ``merge`` is idempotent, and the result's
:func:`~apexcal.ical.ownership.owned_hash` is that of our rendering.
"""

from __future__ import annotations

from icalendar import Component

from apexcal.ical.contentlines import Block, Line, parse, to_bytes
from apexcal.ical.mapping import calendar_header
from apexcal.ical.ownership import (
    MAIN_COMPONENTS,
    MARKED,
    OWNED_PREFIX,
    alarm_uid,
    is_apex_alarm,
    is_marked,
    is_owned,
    is_owned_line,
    main_component,
)
from apexcal.ical.serialize import component_bytes
from apexcal.ical.times import UTC_NAMES
from apexcal.ical.timezones import vtimezone_bytes

Desired = bytes | str | Component

# Properties RFC 5545 allows in both VEVENT and VTODO: a user's copy survives a kind change.
_IN_BOTH = frozenset(
    {"ATTACH", "ATTENDEE", "COMMENT", "CONTACT", "ORGANIZER", "PRIORITY", "RELATED-TO", "REQUEST-STATUS", "RESOURCES"}
)


def _address(line: Line) -> str:
    value = line.value.strip().lower()
    return value.removeprefix("mailto:")


def _wrap(component: Component) -> bytes:
    """A lone VEVENT/VTODO in a VCALENDAR with the VTIMEZONEs its TZIDs need."""
    body = component_bytes(component)
    tzids = {
        value
        for block in parse(b"BEGIN:VCALENDAR\r\n" + body + b"END:VCALENDAR\r\n").walk()
        for line in block.lines()
        for value in line.param("TZID") or ()
    }
    zones = b"".join(vtimezone_bytes(tzid) for tzid in sorted(tzids - UTC_NAMES))
    return calendar_header() + zones + body + b"END:VCALENDAR\r\n"


def rendering(desired: Desired) -> Block:
    """Our rendering as content lines: bytes/text of a VCALENDAR, an icalendar Calendar, or a lone VEVENT/VTODO."""
    if isinstance(desired, Component):
        if desired.name in MAIN_COMPONENTS:
            return parse(_wrap(desired))
        return parse(component_bytes(desired))
    return parse(desired)


def _merge_alarm(held: Block | None, ours: Block) -> Block:
    if held is None:
        return ours
    names = {line.name for line in ours.lines()}
    kept = [
        item
        for item in held.items
        if isinstance(item, Block) or (not is_owned("VALARM", item.name) and item.name not in names)
    ]
    return Block(name=ours.name, begin=ours.begin, end=ours.end, items=[*ours.items, *kept])


def _keeps_line(line: Line, held_kind: str, ours: Block, names: set[str], addresses: set[str]) -> bool:
    """Whether a line of the server's VEVENT/VTODO is the user's and stays."""
    if line.name.startswith(OWNED_PREFIX):
        return False
    if line.name in MARKED:
        if is_marked(line) or (line.name == "ORGANIZER" and ours.first("ORGANIZER") is not None):
            return False
        if line.name == "ATTENDEE" and _address(line) in addresses:
            return False
    elif line.name in names:
        return False
    if held_kind != ours.name and not line.name.startswith("X-") and line.name not in _IN_BOTH:
        return False
    return not is_owned_line(held_kind, line) and not is_owned_line(ours.name, line)


def _merge_main(held: Block | None, ours: Block) -> Block:
    if held is None:
        return ours
    names = {line.name for line in ours.lines()} - MARKED
    addresses = {_address(line) for line in ours.lines() if line.name == "ATTENDEE"}
    kept_lines = [
        line for line in held.lines() if _keeps_line(line, held.name, ours, names, addresses)
    ]
    our_alarm_uids = {alarm_uid(a) for a in ours.blocks("VALARM")} - {None}
    held_alarms: dict[str, Block] = {}
    kept_blocks: list[Line | Block] = []
    for block in held.blocks():
        uid = alarm_uid(block) if block.name == "VALARM" else None
        if block.name == "VALARM" and (is_apex_alarm(block) or uid in our_alarm_uids):
            if uid is not None:
                held_alarms.setdefault(uid, block)
            continue  # ours: merged below when we still render it, else removed
        kept_blocks.append(block)
    our_lines: list[Line | Block] = list(ours.lines())
    our_blocks: list[Line | Block] = [
        _merge_alarm(held_alarms.get(alarm_uid(b) or ""), b) if b.name == "VALARM" else b for b in ours.blocks()
    ]
    return Block(
        name=ours.name, begin=ours.begin, end=ours.end, items=[*our_lines, *kept_lines, *our_blocks, *kept_blocks]
    )


def _tzids(items: list[Line | Block]) -> set[str]:
    found: set[str] = set()
    for item in items:
        blocks = [item] if isinstance(item, Block) else []
        lines = [item] if isinstance(item, Line) else []
        for block in blocks:
            if block.name != "VTIMEZONE":
                lines.extend(line for b in block.walk() for line in b.lines())
        for line in lines:
            found.update(line.param("TZID") or ())
    return found


def _tzid(block: Block) -> str:
    return block.value("TZID") or ""


def merge(current: bytes | str, desired: Desired) -> bytes:
    """The object to PUT: ``current`` (the server's copy) with what apexcal owns replaced by ``desired``.

    ``desired`` is our rendering of the object: the bytes of a one-object
    VCALENDAR as the mapping makes them (or an icalendar ``Calendar``, or a
    lone VEVENT/VTODO, which is wrapped with the VTIMEZONEs its TZIDs need).
    Raises :class:`~apexcal.errors.ContentLineError` (an
    ``ICalError`` naming the line) when ``current`` is not an iCalendar
    object, and ``ValueError`` when ``desired`` holds no VEVENT/VTODO.
    """
    held = parse(current)
    ours = rendering(desired)
    our_main = main_component(ours)
    if our_main is None:
        raise ValueError("the rendering holds no VEVENT or VTODO")
    uid = our_main.value("UID")
    held_main = main_component(held, uid)
    held_uid = held_main.value("UID") if held_main is not None else None
    merged_main = _merge_main(held_main, our_main)

    our_names = {line.name for line in ours.lines()}
    calendar_lines: list[Line | Block] = [*ours.lines()]
    calendar_lines += [
        line
        for line in held.lines()
        if not is_owned("VCALENDAR", line.name) and line.name not in our_names
    ]
    others: list[Line | Block] = [
        block
        for block in held.blocks()
        if block is not held_main
        and block.name != "VTIMEZONE"
        and not (block.name in MAIN_COMPONENTS and block.value("UID") in (uid, held_uid))
    ]
    used = _tzids([*calendar_lines, merged_main, *others])
    zones: list[Line | Block] = list(ours.blocks("VTIMEZONE"))
    have = {_tzid(block) for block in ours.blocks("VTIMEZONE")}
    for block in held.blocks("VTIMEZONE"):
        tzid = _tzid(block)
        if tzid in used and tzid not in have:
            zones.append(block)
            have.add(tzid)
    root = Block(
        name="VCALENDAR", begin=ours.begin, end=ours.end, items=[*calendar_lines, *zones, merged_main, *others]
    )
    return to_bytes(root)


def has_foreign(data: bytes | str) -> bool:
    """Whether an object holds anything apexcal does not own (so a plain PUT of our rendering would lose it).

    ``False`` means :func:`merge` of this copy with any rendering equals that
    rendering: a caller that remembers it may skip reading the copy before an
    update.  VTIMEZONEs do not count (they follow the TZIDs used).
    """
    root = parse(data)
    main = main_component(root)
    if any(not is_owned("VCALENDAR", line.name) for line in root.lines()):
        return True
    if any(block is not main and block.name != "VTIMEZONE" for block in root.blocks()):
        return True
    if main is None:
        return False
    if any(not is_owned_line(main.name, line) for line in main.lines()):
        return True
    for block in main.blocks():
        if not is_apex_alarm(block):
            return True
        if any(not is_owned("VALARM", line.name) for line in block.lines()) or any(block.blocks()):
            return True
    return False



