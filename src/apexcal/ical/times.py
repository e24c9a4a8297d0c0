"""When an activity happens: its DTSTART/DTEND span and the last day it occupies.

Pure arithmetic on an activity's dates and times, shared by the mapping
(DTSTART/DTEND, DUE) and by feed windows (which days an activity touches),
so both always agree.

Dates and times are wall times in a zone.  A wall time that does not exist
(the DST gap) moves forward by the gap (02:30 on a spring-forward night
becomes 03:30); an ambiguous one (the DST overlap) means its first
occurrence — both as ``zoneinfo`` does with ``fold=0``.  No start time →
all-day, with an exclusive end date (the day after the end date, at least
the day after the start).  The end comes from end date/time when that is
after the start; otherwise (missing, or before the start) from ``duration``
minutes, then a default duration.  A midnight crossing (an end time earlier
than the start time meaning the next day) is inferred only when there is no
end date, or when the end date equals the start date *and* ``duration``
agrees with the crossing (23:30–00:30 with duration 60); 14:30–14:00 on one
explicit date is an end before the start, so the duration decides.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo

from apexcal.apex.models import Activity
from apexcal.ical.timezones import zone_for

#: Zone names written as UTC (``Z``) rather than with a TZID.
UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu", "UCT", "Universal", "Zulu"})
#: The length of a timed activity with neither an end nor a duration.
DEFAULT_DURATION = timedelta(minutes=30)

Span = tuple[date, date] | tuple[datetime, datetime]


def is_utc(tzid: str) -> bool:
    """Whether ``tzid`` names UTC itself."""
    return tzid in UTC_NAMES


def _zone(tzid: str) -> tzinfo:
    return UTC if is_utc(tzid) else zone_for(tzid)


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


def span(activity: Activity, timezone: str, default_duration: timedelta = DEFAULT_DURATION) -> Span | None:
    """``(start, end)`` of an activity, end exclusive; dates when all-day; ``None`` without a start date.

    Timed spans are aware datetimes in ``timezone`` (see the module
    docstring for every rule).  Raises ``OverflowError`` for dates at the
    edge of the calendar.
    """
    start_day = activity.start_date
    if start_day is None:
        return None
    if activity.start_time is None:
        last = activity.end_date if activity.end_date and activity.end_date >= start_day else start_day
        return start_day, last + timedelta(days=1)
    zone = _zone(timezone)
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
        end = _later(start, default_duration)
    return start, end


def last_day(activity: Activity, default_duration: timedelta = DEFAULT_DURATION) -> date | None:
    """The last calendar day an activity occupies (``None`` without a start date).

    All-day: the end date (when not before the start), else the start date.
    Timed: the day of the exclusive end by :func:`span`'s rules, computed on
    the wall clock (a DST shift moves an end by an hour, not a day), so an
    end exactly at midnight does not occupy the next day.
    """
    start = activity.start_date
    if start is None:
        return None
    if activity.start_time is None:  # not through span(): the day after 9999-12-31 does not exist
        end_date = activity.end_date
        return end_date if end_date is not None and end_date >= start else start
    found = span(activity, "UTC", default_duration)
    assert found is not None
    assert isinstance(found[1], datetime)
    return (found[1] - timedelta(microseconds=1)).date()
