"""When a target or feed is due in worker mode (pure).

Time is cut into slots of the item's interval, shifted by a phase derived
from the organization's key, so a thousand organizations with one interval
spread over it instead of firing together, while the targets and feeds of one
organization fall due together and share one pull.  An item is due once per slot: when it never ran,
or when its last run ended in an earlier slot.  After consecutive failures it
waits as the daemon does (interval × 2^(failures − 1), capped).
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta

from apexcal.daemon.backoff import backoff_delay


def phase(organization: str, interval: timedelta) -> timedelta:
    """A stable offset in ``[0, interval)`` for the items of ``organization``."""
    digest = hashlib.sha256(organization.encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return timedelta(seconds=interval.total_seconds() * fraction)


def slot(at: datetime, interval: timedelta, offset: timedelta) -> int:
    """The index of the slot ``at`` falls in."""
    return math.floor((at.timestamp() - offset.total_seconds()) / interval.total_seconds())


def is_due(
    now: datetime,
    *,
    interval: timedelta,
    offset: timedelta,
    last_run: datetime | None,
    failures: int = 0,
    last_failure: datetime | None = None,
    backoff_max: timedelta = timedelta(minutes=30),
) -> bool:
    """Whether an item whose last run ended at ``last_run`` should run at ``now``."""
    if failures > 0 and last_failure is not None:
        # The last run failed: wait out the backoff, whatever the slot.
        return now >= last_failure + backoff_delay(interval, failures, backoff_max)
    if last_run is None:
        return True
    return slot(now, interval, offset) > slot(last_run, interval, offset)
