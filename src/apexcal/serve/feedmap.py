"""Which files the feed server may serve, derived from the ``[[feeds]]`` config.

The names and files are those of :func:`apexcal.feeds.naming.feed_files`
(per-user files included); this module adds each feed's cache lifetime.
The mapping is rebuilt from the config and a directory listing; nothing in a
request ever becomes part of a path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Protocol

from apexcal.feeds.naming import FeedFiles, feed_files
from apexcal.serve.library import DEFAULT_MAX_AGE, ServedFeed


class FeedSettings(FeedFiles, Protocol):
    """The part of a feed's config the server needs (``apexcal.config.FeedConfig``)."""

    @property
    def refresh_interval(self) -> timedelta: ...


def _max_age(refresh: timedelta) -> int:
    seconds = int(refresh.total_seconds())
    return seconds if seconds > 0 else DEFAULT_MAX_AGE


def served_feeds(feeds: Iterable[FeedSettings]) -> dict[str, ServedFeed]:
    """Feed name → file for every configured feed and every per-user file on disk.

    Blocking (lists directories of per-user feeds).
    """
    served: dict[str, ServedFeed] = {}
    for feed in feeds:
        max_age = _max_age(feed.refresh_interval)
        for name, path in feed_files(feed):
            served[name] = ServedFeed(path=path, max_age=max_age)
    return served


def feeds_source(feeds: Callable[[], Iterable[FeedSettings]]) -> Callable[[], dict[str, ServedFeed]]:
    """A ``feeds`` argument for :func:`~apexcal.serve.create_app` that follows config reloads."""
    return lambda: served_feeds(feeds())
