"""Feed names and files: a feed's own file and, for ``per_user`` feeds, one file per user.

A per-user feed ``<name>`` configured at ``<stem><suffix>`` also writes one
file per user found among the organization's activities: feed name
``<name>-<user id>``, file ``<stem>-<user id><suffix>`` beside the feed's
path (``team.ics`` → ``team-46.ics``).  A user whose file was built once
keeps getting it, so a subscribed URL never turns into a 404.  The files on
disk are the record of which users exist: :func:`feed_files` lists them with
one directory listing matched against that fixed pattern, and nothing in a
request ever becomes part of a path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

_USER_FEED_NAME = re.compile(r"(.+)-([0-9]+)")


class FeedFiles(Protocol):
    """The part of a feed's config that decides its files (``apexcal.config.FeedConfig``)."""

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> Path: ...
    @property
    def per_user(self) -> bool: ...


def user_feed_name(feed_name: str, user_id: int) -> str:
    """The name of a per-user feed: ``<feed>-<user id>``."""
    return f"{feed_name}-{user_id}"


def split_user_feed_name(name: str) -> tuple[str, int] | None:
    """``(feed, user id)`` when ``name`` has the shape of a per-user feed's name, else ``None``."""
    match = _USER_FEED_NAME.fullmatch(name)
    return None if match is None else (match.group(1), int(match.group(2)))


def user_feed_path(path: Path, user_id: int) -> Path:
    """The file of a per-user feed: ``<stem>-<user id><suffix>`` beside the feed's file."""
    return path.with_name(f"{path.stem}-{user_id}{path.suffix}")


def built_users(path: Path) -> set[int]:
    """User ids whose per-user file of the feed at ``path`` exists (one directory listing)."""
    pattern = re.compile(re.escape(path.stem) + r"-([0-9]+)" + re.escape(path.suffix))
    try:
        names = [entry.name for entry in path.parent.iterdir()]
    except OSError:
        return set()
    return {int(m.group(1)) for n in names if (m := pattern.fullmatch(n)) is not None}


def feed_files(feed: FeedFiles) -> Iterator[tuple[str, Path]]:
    """``(name, file)`` of a feed's own file, then of each per-user file built so far, by user id."""
    yield feed.name, feed.path
    if feed.per_user:
        for user in sorted(built_users(feed.path)):
            yield user_feed_name(feed.name, user), user_feed_path(feed.path, user)


class HasFeeds(Protocol):
    """A config's ``[[feeds]]`` (``apexcal.config.Config``)."""

    @property
    def feeds(self) -> Sequence[FeedFiles]: ...


def feed_paths(config: HasFeeds) -> dict[str, Path]:
    """Every feed name → its file: the configured feeds and the per-user files built so far.

    Cheap (one directory listing per per-user feed), so the feed server can
    call it on each request and serve new per-user files as soon as written.
    """
    return {name: path for feed in config.feeds for name, path in feed_files(feed)}
