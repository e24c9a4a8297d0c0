"""Feeds served from the database (``apexcal serve``): bodies by version, tokens for a bounded time.

Workers store each feed's current body, gzip form, ETag and version in the
state store (:class:`apexcal.feeds.output.DatabaseOutput`).  A server keeps
nothing of its own beyond two caches, so any number of instances on any
machine answer alike:

* **tokens** — a token found in the store is trusted for ``token_ttl``
  (``[server] token_cache``, 30 s by default, at most a minute), then looked
  up again: a revoked URL stops working within that time.  Unknown tokens
  are not cached (a new URL works at once); at most ``max_tokens`` entries
  are kept, least recently used dropped first.
* **bodies** — each feed's body is held by version; its version (one indexed
  row, no body) is checked again once ``version_ttl`` has passed, so a new
  version is served within about a second of the worker's commit.  At most
  ``cache_bytes`` of bodies (and their gzip forms) are held; a feed left out
  is read again when asked for.

Which feeds exist is the config directory's: an organization's configured
feeds, and the per-user feeds of its ``per_user`` ones that a worker built.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from apexcal.feeds.naming import split_user_feed_name
from apexcal.feeds.views import split_view_name
from apexcal.serve.feedmap import FeedSettings
from apexcal.serve.files import FeedVersion
from apexcal.serve.health import HealthSnapshot
from apexcal.serve.library import DEFAULT_MAX_AGE, HeldGrants, Servable, store_grant
from apexcal.serve.tokens import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TOKEN_TTL,
    MISS,
    Grant,
    TokenCache,
    _Miss,
)

if TYPE_CHECKING:
    from apexcal.state import Store

DEFAULT_VERSION_TTL = 1.0
DEFAULT_CACHE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class FeedEntry:
    """What the server needs of one configured feed."""

    per_user: bool
    max_age: int


Catalogue = Mapping[str, Mapping[str, FeedEntry]]
"""Organization key → configured feed name → its entry."""


def catalogue(
    organizations: Iterable[tuple[str, Iterable[FeedSettings]]],
) -> dict[str, dict[str, FeedEntry]]:
    """The :data:`Catalogue` of ``(organization, its [[feeds]])`` pairs."""
    result: dict[str, dict[str, FeedEntry]] = {}
    for org, feeds in organizations:
        result[org] = {
            feed.name: FeedEntry(
                per_user=feed.per_user,
                max_age=int(feed.refresh_interval.total_seconds()) or DEFAULT_MAX_AGE,
            )
            for feed in feeds
        }
    return result


@dataclass(kw_only=True)
class _Body:
    version: int
    etag: str
    feed: FeedVersion
    checked: float
    size: int


class DatabaseFeeds(HeldGrants):
    """A :class:`~apexcal.serve.library.FeedLibrary` over the bodies and tokens in the state store."""

    def __init__(
        self,
        store: Store,
        feeds: Callable[[], Catalogue],
        *,
        token_ttl: float = DEFAULT_TOKEN_TTL,
        version_ttl: float = DEFAULT_VERSION_TTL,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._feeds = feeds
        self._token_ttl = token_ttl
        self._version_ttl = version_ttl
        self._max_tokens = max_tokens
        self._cache_bytes = cache_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._grants = TokenCache(
            self._lookup, ttl=token_ttl, max_entries=max_tokens,
            writes=lambda: store.feed_token_writes, clock=clock,
        )
        self._bodies: OrderedDict[tuple[str, str], _Body] = OrderedDict()
        self._held = 0

    # --- tokens ---------------------------------------------------------------------

    def _lookup(self, token_hash: str) -> Grant | None:
        return store_grant(self._store, token_hash)

    # --- feeds ----------------------------------------------------------------------

    def _entry(self, scope: str, name: str) -> tuple[FeedEntry, bool] | None:
        feeds = self._feeds().get(scope)
        if feeds is None:
            return None
        view = split_view_name(name)
        if view is not None:  # a filtered view: served like its feed, built or not yet
            found = self._entry(scope, view[0])
            return None if found is None else (found[0], False)
        entry = feeds.get(name)
        if entry is not None:
            return entry, False
        split = split_user_feed_name(name)
        entry = feeds.get(split[0]) if split is not None else None
        if entry is None or not entry.per_user:
            return None
        return entry, True

    def servable_now(self, scope: str, name: str) -> Servable | _Miss | None:
        """:meth:`servable` when the feed's body is held and its version check is not due (no store access)."""
        found = self._entry(scope, name)
        if found is None:
            return None
        cached = self._bodies.get((scope, name))
        if cached is None or self._clock() - cached.checked >= self._version_ttl:
            return MISS
        return Servable(version=cached.feed, max_age=found[0].max_age)

    def servable(self, scope: str, name: str) -> Servable | None:
        """Feed ``name`` of organization ``scope`` with its current body, if the config has it."""
        found = self._entry(scope, name)
        if found is None:
            return None
        entry, per_user = found
        version = self._version(scope, name)
        if version is None and per_user:
            return None  # a user no worker built a feed for is no feed at all
        return Servable(version=version, max_age=entry.max_age)

    def _version(self, org: str, name: str) -> FeedVersion | None:
        key = (org, name)
        now = self._clock()
        with self._lock:
            cached = self._bodies.get(key)
            if cached is not None:
                self._bodies.move_to_end(key)
                if now - cached.checked < self._version_ttl:
                    return cached.feed
        store = self._store.for_organization(org)
        current = store.feed_body_version(name)
        if current is None:
            self._forget(key)
            return None
        if cached is not None and (cached.version, cached.etag) == current:
            cached.checked = now
            return cached.feed
        body = store.feed_body(name)
        if body is None:
            self._forget(key)
            return None
        feed = FeedVersion(
            identity=(org, name, body.version, body.etag),
            body=body.body,
            etag=body.etag,
            last_modified=body.modified_at,
            gzip=body.gzip,
        )
        self._keep(key, _Body(
            version=body.version, etag=body.etag, feed=feed, checked=now,
            size=len(body.body) + len(body.gzip),
        ))
        return feed

    def _forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            gone = self._bodies.pop(key, None)
            if gone is not None:
                self._held -= gone.size

    def _keep(self, key: tuple[str, str], body: _Body) -> None:
        with self._lock:
            old = self._bodies.pop(key, None)
            if old is not None:
                self._held -= old.size
            if body.size > self._cache_bytes:
                return  # served, not kept
            self._bodies[key] = body
            self._held += body.size
            while self._held > self._cache_bytes:
                _, dropped = self._bodies.popitem(last=False)
                self._held -= dropped.size

    @property
    def cached_bytes(self) -> int:
        """Bytes of bodies (and gzip forms) held now."""
        with self._lock:
            return self._held


class DatabaseHealth:
    """``/healthz`` of ``apexcal serve``: the last build of every configured feed, from the store.

    Reading the store is the check: when it cannot be read the server
    answers 503.  Stale feeds are reported, not fatal — a server that can
    read the store serves the last good version (see ``stale_is_unhealthy``
    of :func:`~apexcal.serve.app.create_app`).
    """

    def __init__(
        self,
        store: Store,
        feeds: Callable[[], Catalogue],
        *,
        stale_after: timedelta,
        started_at: datetime,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._feeds = feeds
        self._stale_after = stale_after
        self._started_at = started_at
        self._clock = clock

    def snapshot(self) -> HealthSnapshot:
        """Every organization's feeds (``<org>/<feed>``) with their last build."""
        built = {(org, s.feed): s.built_at for org, s in self._store.feed_status_everywhere()}
        feeds: dict[str, datetime | None] = {}
        for org, entries in self._feeds().items():
            per_user = {name for name, entry in entries.items() if entry.per_user}
            for name in entries:
                feeds[f"{org}/{name}"] = built.get((org, name))
            for (where, name), at in built.items():
                split = split_user_feed_name(name)
                if where == org and split is not None and split[0] in per_user:
                    feeds[f"{org}/{name}"] = at
        return HealthSnapshot(
            now=self._clock(),
            stale_after=self._stale_after,
            started_at=self._started_at,
            feeds=feeds,
            targets={},
        )
