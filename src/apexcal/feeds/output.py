"""Where a feed build puts its bytes: files (single process) or the database (workers).

:class:`FeedOutput` is what the builder needs of either: the outputs a
configured feed has so far (its own, and a per-user one per user), a write
that keeps the old version when the bytes did not change, and whether an
output is still the one the last build recorded.

* :class:`FileOutput` — ``apexcal run`` and ``apexcal sync``: atomic files
  beside the configured ``path`` (:mod:`apexcal.feeds.atomic`), served by the
  daemon's own server.
* :class:`DatabaseOutput` — ``apexcal worker``: one row per feed in the state
  store holding body, gzip form, ETag and a version, replaced in one
  statement, so any number of stateless ``apexcal serve`` instances serve
  the same bytes and a reader never sees half of a version.  The body is
  held in memory while it is stored (a database parameter is one value).
"""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from apexcal.clock import Clock, utcnow
from apexcal.feeds.atomic import WriteResult, write_atomic
from apexcal.feeds.naming import (
    FeedFiles,
    built_users,
    feed_files,
    split_user_feed_name,
    user_feed_name,
    user_feed_path,
)
from apexcal.ical.feed import etag_from_sha256

if TYPE_CHECKING:
    from apexcal.state import Store
    from apexcal.state.records import FeedStatus

Writer = Callable[[BinaryIO], None]


def compress(body: bytes) -> bytes:
    """The gzip form every server sends of ``body``: deterministic (no timestamp), level 6."""
    return gzip.compress(body, compresslevel=6, mtime=0)


class FeedOutput(Protocol):
    """Where the outputs of feeds are written and found (see the module docstring)."""

    def outputs(self, feed: FeedFiles) -> Iterator[tuple[str, Path]]:
        """``(name, path)`` of the feed's own output, then of each per-user output so far, by user id."""
        ...

    def users(self, feed: FeedFiles) -> set[int]:
        """User ids the per-user ``feed`` has an output for."""
        ...

    def write(self, name: str, path: Path, *, parent: str, write: Writer) -> WriteResult:
        """Write output ``name`` with ``write(stream)``; unchanged bytes keep the old version."""
        ...

    def intact(self, name: str, path: Path, status: FeedStatus) -> bool:
        """Whether output ``name`` is still what the build recorded in ``status`` left."""
        ...

    def stamp(self, name: str, path: Path) -> int | None:
        """What :meth:`intact` compares for files (their mtime in ns); ``None`` when not a file."""
        ...


class FileOutput:
    """Feeds as files at their configured paths (``apexcal run``, ``apexcal sync``)."""

    def outputs(self, feed: FeedFiles) -> Iterator[tuple[str, Path]]:
        """The feed's file and the per-user files on disk."""
        return feed_files(feed)

    def users(self, feed: FeedFiles) -> set[int]:
        """Users whose per-user file exists."""
        return built_users(feed.path)

    def write(self, name: str, path: Path, *, parent: str, write: Writer) -> WriteResult:
        """Write the file atomically, only when its bytes changed."""
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(path, write, only_if_changed=True)

    def intact(self, name: str, path: Path, status: FeedStatus) -> bool:
        """The file has the size and mtime it had after the recorded build."""
        try:
            st = path.stat()
        except OSError:
            return False
        return (st.st_size, st.st_mtime_ns) == (status.length, status.mtime_ns)

    def stamp(self, name: str, path: Path) -> int | None:
        """The file's mtime in ns (``None`` when gone)."""
        try:
            return path.stat().st_mtime_ns
        except OSError:
            return None


class DatabaseOutput:
    """Feeds as versioned rows of the state store (``apexcal worker``)."""

    def __init__(self, store: Store, *, clock: Clock = utcnow) -> None:
        self._store = store
        self._clock = clock

    def outputs(self, feed: FeedFiles) -> Iterator[tuple[str, Path]]:
        """The feed itself, then the per-user feeds with a body in the store."""
        yield feed.name, feed.path
        for user in sorted(self.users(feed)):
            yield user_feed_name(feed.name, user), user_feed_path(feed.path, user)

    def users(self, feed: FeedFiles) -> set[int]:
        """Users whose per-user feed has a body in the store."""
        if not feed.per_user:
            return set()
        users = set()
        for name in self._store.feed_body_names(feed.name):
            split = split_user_feed_name(name)
            if split is not None and split[0] == feed.name:
                users.add(split[1])
        return users

    def write(self, name: str, path: Path, *, parent: str, write: Writer) -> WriteResult:
        """Store the body as the feed's next version, unless its ETag is the current one's."""
        buffer = io.BytesIO()
        write(buffer)
        body = buffer.getvalue()
        sha256 = hashlib.sha256(body).hexdigest()
        current = self._store.feed_body_version(name)
        if current is not None and current[1] == etag_from_sha256(sha256):
            return WriteResult(path=path, changed=False, sha256=sha256, length=len(body))
        self._store.put_feed_body(
            name, parent=parent, body=body, gzip=compress(body),
            etag=etag_from_sha256(sha256), at=self._clock(),
        )
        return WriteResult(path=path, changed=True, sha256=sha256, length=len(body))

    def intact(self, name: str, path: Path, status: FeedStatus) -> bool:
        """The store's current body of ``name`` is the one the build recorded."""
        current = self._store.feed_body_version(name)
        return current is not None and current[1] == status.etag

    def stamp(self, name: str, path: Path) -> int | None:
        """Nothing: a stored body is compared by its ETag."""
        return None
