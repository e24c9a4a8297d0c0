"""Which files the feed server may serve, derived from the ``[[feeds]]`` config.

A feed is served from its configured ``path``.  A per-user feed
(``per_user = true``) is written as one file per user beside that path, named
``<stem>-<user id><suffix>`` (``team.ics`` → ``team-46.ics``) and served as
feed ``<name>-<user id>``.  The mapping is rebuilt from the config and a
directory listing matched against that fixed pattern; nothing in a request
ever becomes part of a path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from apexcal.feeds import built_users, user_feed_name, user_feed_path
from apexcal.serve.app import DEFAULT_MAX_AGE, ServedFeed


class FeedSettings(Protocol):
    """The part of a feed's config the server needs (``apexcal.config.FeedConfig``)."""

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> Path: ...
    @property
    def per_user(self) -> bool: ...
    @property
    def refresh_interval(self) -> timedelta: ...


def per_user_path(path: Path, user_id: int) -> Path:
    """The file of user ``user_id``'s copy of a per-user feed configured at ``path``."""
    return user_feed_path(path, user_id)


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
        served[feed.name] = ServedFeed(path=feed.path, max_age=max_age)
        if not feed.per_user:
            continue
        for user in sorted(built_users(feed.path)):
            served[user_feed_name(feed.name, user)] = ServedFeed(
                path=user_feed_path(feed.path, user), max_age=max_age
            )
    return served


def feeds_source(feeds: Callable[[], Iterable[FeedSettings]]) -> Callable[[], dict[str, ServedFeed]]:
    """A ``feeds`` argument for :func:`~apexcal.serve.create_app` that follows config reloads."""
    return lambda: served_feeds(feeds())
