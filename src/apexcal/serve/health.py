"""Health of a running apexcal: are feeds being built and targets syncing in time?

The server asks a :class:`HealthSource` for a :class:`HealthSnapshot` (the
current time, the staleness bound, and the last success of every feed and
target) and turns it into a report with :func:`health_report`, which is pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from apexcal.feeds.naming import split_user_feed_name


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


class _FeedBuild(Protocol):
    @property
    def feed(self) -> str: ...
    @property
    def built_at(self) -> datetime | None: ...


class _TargetRun(Protocol):
    @property
    def target(self) -> str: ...
    @property
    def last_success_at(self) -> datetime | None: ...


class HealthStore(Protocol):
    """The part of the state store that health reads."""

    def all_feed_status(self) -> Sequence[_FeedBuild]:
        """The last build of every feed."""
        ...

    def all_target_states(self) -> Sequence[_TargetRun]:
        """The state of every target that ever ran."""
        ...


class StoreHealth:
    """A :class:`HealthSource` over the state store, for the configured feeds and targets.

    ``feeds`` and ``targets`` are called on every check and name what is
    expected to be fresh (so a reloaded config is honoured and retired
    targets left in the store do not count); per-user feeds the store has
    seen built are included when ``per_user_feeds`` names their base feed.
    """

    def __init__(
        self,
        store: HealthStore,
        *,
        feeds: Callable[[], Iterable[str]],
        targets: Callable[[], Iterable[str]],
        stale_after: timedelta,
        started_at: datetime,
        clock: Callable[[], datetime],
        per_user_feeds: Callable[[], Iterable[str]] = lambda: (),
    ) -> None:
        self._store = store
        self._feeds = feeds
        self._targets = targets
        self._per_user = per_user_feeds
        self._stale_after = stale_after
        self._started_at = started_at
        self._clock = clock

    def snapshot(self) -> HealthSnapshot:
        """Read the last builds and successes from the store."""
        built = {status.feed: status.built_at for status in self._store.all_feed_status()}
        succeeded = {
            state.target: state.last_success_at for state in self._store.all_target_states()
        }
        feeds: dict[str, datetime | None] = {name: built.get(name) for name in self._feeds()}
        bases = set(self._per_user())
        for name, at in built.items():
            split = split_user_feed_name(name)
            if split is not None and split[0] in bases:
                feeds[name] = at
        return HealthSnapshot(
            now=self._clock(),
            stale_after=self._stale_after,
            started_at=self._started_at,
            feeds=feeds,
            targets={name: succeeded.get(name) for name in self._targets()},
        )
