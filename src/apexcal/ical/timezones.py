"""Compact, RRULE-based VTIMEZONE definitions valid for every date.

icalendar's generated VTIMEZONE lists each transition up to 2038, so a 2045
event would resolve with a wrong offset, and the block is long.  We build one
STANDARD and one DAYLIGHT observance with yearly RRULEs from the zone's
current rules, read from the POSIX TZ string in the footer of its TZif file
(tzdata).  Zones without daylight saving get a single STANDARD observance
(repeating yearly, so every reader applies it to all later dates).

The observances start (DTSTART) in the first year since 1970 from which the
current rules have held without interruption, so offsets are exact from then
on; earlier dates resolve with the oldest observance (RFC 5545 leaves them
undefined) — a documented limitation that matters only for activities older
than the last rule change of their zone (2007 for the USA, 1996 for the EU).

Zones a yearly RRULE cannot describe (Julian-day rules, transitions shifted
across a month boundary, zones whose table runs past 2037 such as
Africa/Casablanca) fall back to icalendar's transition list, generated up to
2100.
Results are cached per zone and are deterministic.
"""

from __future__ import annotations

import calendar
import importlib.resources
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Timezone

from apexcal.errors import UnknownTimezone

_DAYS = ("SU", "MO", "TU", "WE", "TH", "FR", "SA")
_NAME = r"(<[^>]+>|[A-Za-z]{3,})"
_OFFSET = r"([+-]?\d{1,2}(?::\d{2}){0,2})"
_RULE = r"M(\d{1,2})\.(\d)\.(\d)(?:/([+-]?\d{1,3}(?::\d{2}){0,2}))?"
_POSIX = re.compile(rf"^{_NAME}{_OFFSET}(?:{_NAME}({_OFFSET})?(?:,{_RULE},{_RULE}))?$")
_FIRST_YEAR = 1970
_LAST_CHECKED_YEAR = 2037
_FALLBACK_LAST_YEAR = 2100



@dataclass(frozen=True, kw_only=True)
class _Rule:
    month: int
    week: int  # 1..4, 5 = last
    weekday: int  # 0 = Sunday
    seconds: int  # local time of the transition, may be negative or > 24 h


@dataclass(frozen=True, kw_only=True)
class _Posix:
    std_name: str
    std_offset: int  # seconds east of UTC
    dst_name: str | None = None
    dst_offset: int | None = None
    dst_start: _Rule | None = None
    dst_end: _Rule | None = None


def _seconds(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    parts = [int(p) for p in text.lstrip("+-").split(":")]
    parts += [0] * (3 - len(parts))
    return sign * (parts[0] * 3600 + parts[1] * 60 + parts[2])


def _name(text: str) -> str:
    return text[1:-1] if text.startswith("<") else text


def _rule(month: str, week: str, weekday: str, at: str | None) -> _Rule:
    return _Rule(
        month=int(month),
        week=int(week),
        weekday=int(weekday),
        seconds=7200 if at is None else _seconds(at),
    )


def _parse_posix(text: str) -> _Posix | None:
    match = _POSIX.match(text)
    if match is None:
        return None
    g = match.groups()
    std_offset = -_seconds(g[1])  # POSIX offsets are west of UTC
    if g[2] is None:
        return _Posix(std_name=_name(g[0]), std_offset=std_offset)
    if g[5] is None:
        return None  # DST without a rule: not something tzdata writes
    dst_offset = std_offset + 3600 if g[3] is None else -_seconds(g[3])
    return _Posix(
        std_name=_name(g[0]),
        std_offset=std_offset,
        dst_name=_name(g[2]),
        dst_offset=dst_offset,
        dst_start=_rule(*g[5:9]),
        dst_end=_rule(*g[9:13]),
    )


def _footer(tzid: str) -> str:
    if tzid.startswith("/") or ".." in tzid.split("/"):
        raise UnknownTimezone(tzid)
    try:
        blob = importlib.resources.files("tzdata.zoneinfo").joinpath(tzid).read_bytes()
    except (OSError, ValueError) as exc:
        raise UnknownTimezone(tzid) from exc
    if not blob.startswith(b"TZif"):
        raise UnknownTimezone(tzid)
    return blob.rstrip(b"\n").rsplit(b"\n", 1)[-1].decode("ascii", errors="replace")


def _onset(rule: _Rule, year: int) -> datetime:
    """Local wall time (in the offset before the change) of a rule's transition in ``year``."""
    first_weekday_of_month = (calendar.weekday(year, rule.month, 1) + 1) % 7  # 0 = Sunday
    day = 1 + (rule.weekday - first_weekday_of_month) % 7 + 7 * (rule.week - 1)
    last = calendar.monthrange(year, rule.month)[1]
    while day > last:
        day -= 7
    return datetime(year, rule.month, day) + timedelta(seconds=rule.seconds)


def _rrule(rule: _Rule) -> str | None:
    """A yearly RRULE for the rule, or ``None`` when one cannot express it."""
    shift = rule.seconds // 86400
    weekday = _DAYS[(rule.weekday + shift) % 7]
    if shift == 0:
        nth = -1 if rule.week == 5 else rule.week
        return f"FREQ=YEARLY;BYMONTH={rule.month};BYDAY={nth}{_DAYS[rule.weekday]}"
    if rule.week == 5:
        days = list(range(-7 + shift, shift))
        if days[-1] > -1:
            return None
    else:
        days = list(range((rule.week - 1) * 7 + 1 + shift, rule.week * 7 + 1 + shift))
        shortest = 28 if rule.month == 2 else calendar.monthrange(2001, rule.month)[1]
        if days[0] < 1 or days[-1] > shortest:
            return None
    monthdays = ",".join(str(d) for d in days)
    return f"FREQ=YEARLY;BYMONTH={rule.month};BYDAY={weekday};BYMONTHDAY={monthdays}"


def _offset_text(seconds: int) -> str:
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    text = f"{sign}{seconds // 3600:02d}{seconds % 3600 // 60:02d}"
    return text + (f"{seconds % 60:02d}" if seconds % 60 else "")


def _holds(zone: ZoneInfo, posix: _Posix, year: int) -> bool:
    """Whether the zone's real transitions in ``year`` are the POSIX rule's."""
    assert posix.dst_start
    assert posix.dst_end
    assert posix.dst_offset is not None
    pairs = (
        (posix.dst_start, posix.std_offset, posix.dst_offset),
        (posix.dst_end, posix.dst_offset, posix.std_offset),
    )
    for rule, before, after in pairs:
        instant = (_onset(rule, year) - timedelta(seconds=before)).replace(tzinfo=UTC)
        just_before = (instant - timedelta(seconds=1)).astimezone(zone).utcoffset()
        at = instant.astimezone(zone).utcoffset()
        if just_before != timedelta(seconds=before) or at != timedelta(seconds=after):
            return False
    return True


def _holds_fixed(zone: ZoneInfo, offset: int, year: int) -> bool:
    for month in (1, 7):
        probe = datetime(year, month, 1, tzinfo=UTC).astimezone(zone).utcoffset()
        if probe != timedelta(seconds=offset):
            return False
    return True


def _first_year(zone: ZoneInfo, posix: _Posix) -> int:
    year = _LAST_CHECKED_YEAR
    while year > _FIRST_YEAR:
        if posix.dst_start is None:
            if not _holds_fixed(zone, posix.std_offset, year - 1):
                break
        elif not _holds(zone, posix, year - 1):
            break
        year -= 1
    return year


def _observance(
    kind: str, name: str, start: datetime, before: int, after: int, rrule: str | None
) -> list[str]:
    lines = [
        f"BEGIN:{kind}",
        f"DTSTART:{start:%Y%m%dT%H%M%S}",
    ]
    if rrule:
        lines.append(f"RRULE:{rrule}")
    lines += [
        f"TZNAME:{name}",
        f"TZOFFSETFROM:{_offset_text(before)}",
        f"TZOFFSETTO:{_offset_text(after)}",
        f"END:{kind}",
    ]
    return lines


def _rule_based(tzid: str, zone: ZoneInfo, posix: _Posix) -> bytes | None:
    year = _first_year(zone, posix)
    if year >= _LAST_CHECKED_YEAR:
        return None  # the footer does not describe the zone before 2037 (e.g. Africa/Casablanca)
    lines = ["BEGIN:VTIMEZONE", f"TZID:{tzid}"]
    if posix.dst_start is None:
        # A yearly no-op RRULE: some strict readers (the ``ical`` package) apply an
        # observance without RRULE/RDATE only at its DTSTART instant.
        lines += _observance(
            "STANDARD",
            posix.std_name,
            datetime(year, 1, 1),
            posix.std_offset,
            posix.std_offset,
            "FREQ=YEARLY",
        )
    else:
        assert posix.dst_end
        assert posix.dst_name
        assert posix.dst_offset is not None
        start_rule, end_rule = _rrule(posix.dst_start), _rrule(posix.dst_end)
        if start_rule is None or end_rule is None:
            return None
        # Observances sorted by kind so the bytes do not depend on the hemisphere.
        lines += _observance(
            "DAYLIGHT",
            posix.dst_name,
            _onset(posix.dst_start, year),
            posix.std_offset,
            posix.dst_offset,
            start_rule,
        )
        lines += _observance(
            "STANDARD",
            posix.std_name,
            _onset(posix.dst_end, year),
            posix.dst_offset,
            posix.std_offset,
            end_rule,
        )
    lines.append("END:VTIMEZONE")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


@cache
def vtimezone_bytes(tzid: str) -> bytes:
    """The serialized VTIMEZONE (CRLF line ends) for an IANA zone; cached per zone.

    Raises :class:`UnknownTimezone` for a name tzdata does not know.
    """
    footer = _footer(tzid)
    try:
        zone = ZoneInfo(tzid)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimezone(tzid) from exc
    posix = _parse_posix(footer)
    if posix is not None:
        block = _rule_based(tzid, zone, posix)
        if block is not None:
            return block
    fallback = Timezone.from_tzinfo(
        zone, tzid=tzid, first_date=date(_FIRST_YEAR, 1, 1), last_date=date(_FALLBACK_LAST_YEAR, 1, 1)
    )
    generated: bytes = fallback.to_ical()
    return generated


def vtimezone(tzid: str) -> Timezone:
    """The VTIMEZONE component for an IANA zone (parsed from :func:`vtimezone_bytes`)."""
    parsed = Timezone.from_ical(vtimezone_bytes(tzid))
    assert isinstance(parsed, Timezone)
    return parsed


@cache
def zone_for(tzid: str) -> ZoneInfo:
    """The ``ZoneInfo`` for a zone name, or :class:`UnknownTimezone`."""
    _footer(tzid)
    try:
        return ZoneInfo(tzid)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimezone(tzid) from exc
