"""Health of a running apexcal: are feeds being built and targets syncing in time?

The server asks a :class:`HealthSource` for a :class:`HealthSnapshot` (the
current time, the staleness bound, and the last success of every feed and
target) and turns it into a report with :func:`health_report`, which is pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol


@dataclass(frozen=True, kw_only=True)
class HealthSnapshot:
    """Everything needed to judge health at one instant.

    ``feeds`` and ``targets`` map names to the time of their last successful
    build / cycle (``None``: never).  Something that never succeeded counts as
    stale once ``started_at`` is further back than ``stale_after``, so a fresh
    start is healthy while its first cycles run.
    """

    now: datetime
    stale_after: timedelta
    started_at: datetime
    feeds: Mapping[str, datetime | None]
    targets: Mapping[str, datetime | None]


class HealthSource(Protocol):
    """Where the server gets health data (the state store, in the daemon)."""

    def snapshot(self) -> HealthSnapshot:
        """The current health data; may block (it runs in a worker thread)."""
        ...


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _is_stale(last: datetime | None, snap: HealthSnapshot) -> bool:
    reference = last if last is not None else snap.started_at
    return snap.now - reference > snap.stale_after


def health_report(snap: HealthSnapshot) -> tuple[bool, dict[str, Any]]:
    """``(healthy, JSON document)`` for ``snap``; unhealthy when anything is stale."""
    feeds = {
        name: {"last_built": _iso(last), "stale": _is_stale(last, snap)}
        for name, last in sorted(snap.feeds.items())
    }
    targets = {
        name: {"last_success": _iso(last), "stale": _is_stale(last, snap)}
        for name, last in sorted(snap.targets.items())
    }
    healthy = not any(item["stale"] for item in (*feeds.values(), *targets.values()))
    return healthy, {
        "status": "ok" if healthy else "stale",
        "now": snap.now.isoformat(),
        "stale_after_seconds": snap.stale_after.total_seconds(),
        "feeds": feeds,
        "targets": targets,
    }
