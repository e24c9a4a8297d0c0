"""An injectable clock, so that code taking ``now`` stays testable and pure."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def today(clock: Clock = utcnow) -> date:
    """Today's date in UTC according to ``clock``."""
    return clock().date()
