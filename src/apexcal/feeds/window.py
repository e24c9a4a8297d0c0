"""A feed's window: the activities overlapping ``[today − past_days, today + future_days]``.

Multi-day activities are in when any of their days falls inside; which days
an activity occupies follows the mapping's own rules (:mod:`apexcal.ical.times`),
so a feed never shows an event its window should have left out, or misses
one it covers.  ``today`` is today in the source's time zone; it only
selects, it never changes an event's bytes.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from apexcal.apex.models import Activity
from apexcal.clock import Clock, utcnow
from apexcal.ical.times import DEFAULT_DURATION, last_day

if TYPE_CHECKING:
    from apexcal.config import Config, FeedConfig


def feed_today(config: Config, clock: Clock = utcnow) -> date:
    """Today in the source's time zone: the day feed windows are centred on."""
    return clock().astimezone(ZoneInfo(config.source.timezone)).date()


def feed_window(feed: FeedConfig, today: date) -> tuple[date, date]:
    """``(first, last)`` day of the feed's window, both inclusive."""
    return today - timedelta(days=feed.window.past_days), today + timedelta(
        days=feed.window.future_days
    )


def in_window(
    activity: Activity, first: date, last: date, default_duration: timedelta = DEFAULT_DURATION
) -> bool:
    """Whether ``activity`` overlaps the days ``[first, last]``; undated activities never do."""
    start = activity.start_date
    end = last_day(activity, default_duration)
    return start is not None and end is not None and start <= last and end >= first
