"""The feed server of an ``apexcal run`` process: its application (:func:`feed_app`), and for every organization of a config directory.

A token resolves to its organization and feed through the shared store
(token hashes are unique across organizations), and that organization's
file is served (:class:`DirectoryFeeds`); ``/healthz`` reports every
organization's targets and feeds as ``<org>/<name>`` (:class:`DirectoryHealth`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from apexcal.config import Config, ServerConfig
from apexcal.metrics import Metrics
from apexcal.serve.app import FEED_MAP_TTL, Servable, ServedFeed
from apexcal.serve.feedmap import served_feeds
from apexcal.serve.files import FeedFileCache
from apexcal.serve.health import HealthSnapshot, StoreHealth
from apexcal.serve.library import HeldGrants, served_entry, store_grant
from apexcal.serve.tokens import MISS, Grant, TokenCache, _Miss
from apexcal.state import Store

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from apexcal.serve.hooks import HookEndpoint

Organizations = Callable[[], Mapping[str, Config]]
"""The organizations in force, by key (followed across reloads)."""


class DirectoryFeeds(HeldGrants):
    """A :class:`~apexcal.serve.app.FeedLibrary` over every organization's feed files.

    A token opens the feed it was issued for in its own organization; a token
    of an organization no longer configured opens nothing.  Grants are held
    for ``token_ttl`` seconds (``[server] token_cache``), as the
    single-organization server holds them.
    """

    def __init__(self, store: Store, organizations: Organizations, *, token_ttl: float = 0.0) -> None:
        self._store = store
        self._organizations = organizations
        self._cache = FeedFileCache()
        self._lock = threading.Lock()
        # Each organization's feed map as servable() read it last, with when.
        self._held: dict[str, tuple[float, dict[str, ServedFeed]]] = {}
        self._grants = TokenCache(
            self._lookup, ttl=token_ttl, writes=lambda: int(getattr(store, "feed_token_writes", 0))
        )

    def _lookup(self, token_hash: str) -> Grant | None:
        return store_grant(self._store, token_hash)

    def servable(self, scope: str, name: str) -> Servable | None:
        """The file of feed ``name`` of organization ``scope``, read once per version.

        Blocking: the feed map lists the directories of per-user feeds.
        """
        config = self._organizations().get(scope)
        if config is None:
            return None
        feeds = served_feeds(config.feeds)
        with self._lock:
            self._held[scope] = (time.monotonic(), feeds)
        entry = served_entry(feeds, name)
        if entry is None:
            return None
        return Servable(version=self._cache.load(entry.path), max_age=entry.max_age)

    def servable_now(self, scope: str, name: str) -> Servable | _Miss | None:
        """The file of ``name`` of ``scope`` if the version read last is still the file's, else :data:`MISS`.

        As the single-organization server does: the organization's feed map is
        the one :meth:`servable` read within ``FEED_MAP_TTL`` seconds; a name
        it does not hold, a missing or a changed file go to :meth:`servable`.
        """
        if scope not in self._organizations():
            return None
        held = self._held.get(scope)
        if held is None or time.monotonic() - held[0] >= FEED_MAP_TTL:
            return MISS
        entry = served_entry(held[1], name)
        if entry is None:
            return MISS
        version = self._cache.current(entry.path)
        if version is None or isinstance(version, _Miss):
            return MISS
        return Servable(version=version, max_age=entry.max_age)


class DirectoryHealth:
    """``/healthz`` of every organization: its targets and feeds as ``<org>/<name>``."""

    def __init__(
        self,
        store: Store,
        organizations: Organizations,
        *,
        stale_after: timedelta,
        started_at: datetime,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._organizations = organizations
        self._stale_after = stale_after
        self._started_at = started_at
        self._clock = clock

    def snapshot(self) -> HealthSnapshot:
        """Each organization's snapshot, names qualified by its key."""
        feeds: dict[str, datetime | None] = {}
        targets: dict[str, datetime | None] = {}
        for key, config in sorted(self._organizations().items()):
            feed_names = [f.name for f in config.feeds]
            target_names = [t.name for t in config.targets]
            per_user = [f.name for f in config.feeds if f.per_user]
            one = StoreHealth(
                self._store.for_organization(key),
                feeds=_constant(feed_names),
                targets=_constant(target_names),
                per_user_feeds=_constant(per_user),
                stale_after=self._stale_after,
                started_at=self._started_at,
                clock=self._clock,
            ).snapshot()
            feeds.update({f"{key}/{name}": at for name, at in one.feeds.items()})
            targets.update({f"{key}/{name}": at for name, at in one.targets.items()})
        return HealthSnapshot(
            now=self._clock(),
            stale_after=self._stale_after,
            started_at=self._started_at,
            feeds=feeds,
            targets=targets,
        )


def _constant(names: list[str]) -> Callable[[], list[str]]:
    return lambda: names


def feed_app(
    server: ServerConfig,
    hooks: HookEndpoint,
    *,
    root: Store,
    store: Store,
    config: Callable[[], Config],
    organizations: Callable[[], Mapping[str, Config]],
    metrics: Metrics,
    qualify: bool,
) -> ASGIApp:
    """The daemon's feed server: one organization's feeds (``config``, ``store``), or with ``qualify`` every organization's.

    ``config`` and ``organizations`` give what is in force at each request
    (a reload replaces them); ``root`` is the store every organization is
    keyed in.
    """
    from apexcal.clock import utcnow
    from apexcal.serve import create_app, feeds_source

    if qualify:
        return create_app(
            library=DirectoryFeeds(root, organizations,
                                   token_ttl=server.token_cache.total_seconds()),
            health=DirectoryHealth(root, organizations,
                                   stale_after=server.stale_after, started_at=utcnow(),
                                   clock=utcnow),
            metrics_registry=metrics.registry,
            metrics=metrics,
            hooks=hooks,
            token_cache=server.token_cache.total_seconds(),
        )
    health = StoreHealth(
        store,
        feeds=lambda: [f.name for f in config().feeds],
        targets=lambda: [t.name for t in config().targets],
        per_user_feeds=lambda: [f.name for f in config().feeds if f.per_user],
        stale_after=server.stale_after,
        started_at=utcnow(),
        clock=utcnow,
    )
    return create_app(
        feeds=feeds_source(lambda: config().feeds),
        tokens=store,
        health=health,
        metrics_registry=metrics.registry,
        metrics=metrics,
        hooks=hooks,
        token_cache=server.token_cache.total_seconds(),
    )
