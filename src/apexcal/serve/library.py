"""Where the feed server finds feeds and tokens: the :class:`FeedLibrary` protocol and the files one.

:class:`FileFeeds` serves the daemon's feed files (the configured mapping)
with tokens from the state store; :mod:`apexcal.serve.database` serves the
bodies workers keep in the database (``apexcal serve``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from apexcal.feeds.views import split_view_name, view_name, view_path
from apexcal.serve.files import FeedFileCache, FeedVersion
from apexcal.serve.tokens import MISS, Grant, TokenCache, _Miss

if TYPE_CHECKING:
    from apexcal.state.records import TokenGrant

__all__ = [
    "DEFAULT_MAX_AGE", "FEED_MAP_TTL", "FeedLibrary", "FeedTokenLookup", "FeedsSource", "FileFeeds",
    "Servable", "ServedFeed", "served_entry", "view_output",
]

# How long the feed map FileFeeds read last answers requests on the event loop (seconds).
FEED_MAP_TTL = 1.0
DEFAULT_MAX_AGE = 300


@dataclass(frozen=True, kw_only=True)
class ServedFeed:
    """A feed file the server may serve, with its client cache lifetime in seconds."""

    path: Path
    max_age: int = DEFAULT_MAX_AGE


class FeedTokenLookup(Protocol):
    """Resolves a token hash to the feed it is bound to (the state store, in the daemon)."""

    def feed_token_state(self, token_hash: str) -> tuple[str, bool, str | None] | None:
        """The feed a token with this SHA-256 hex hash was issued for, whether it is revoked, its filter.

        ``None`` for a hash never issued.  The filter is the canonical text of
        the token's view (``None``: the whole feed).
        """
        ...


FeedsSource = Callable[[], Mapping[str, Path | ServedFeed]]


class Servable(NamedTuple):
    """A feed the server may serve: its current version (``None``: not built yet) and cache lifetime.

    A named tuple: one is made for each request answered from memory.
    """

    version: FeedVersion | None
    max_age: int = DEFAULT_MAX_AGE


class FeedLibrary(Protocol):
    """Tokens and feed versions, wherever they live (files and the store; the database)."""

    def grant(self, token_hash: str) -> Grant | None:
        """What the token with this SHA-256 hex hash opens; ``None`` for a hash never issued."""
        ...

    def servable(self, scope: str, name: str) -> Servable | None:
        """Feed ``name`` of ``scope`` with its current version; ``None`` when there is no such feed."""
        ...

    def grant_now(self, token_hash: str) -> Grant | _Miss:
        """:meth:`grant` from memory only (no store, no blocking): :data:`MISS` when not held."""
        ...

    def servable_now(self, scope: str, name: str) -> Servable | _Miss | None:
        """:meth:`servable` from memory (and at most a ``stat``): :data:`MISS` when it must read."""
        ...


class _TokenGrants(Protocol):
    def token_grant(self, token_hash: str) -> TokenGrant | None: ...


def store_grant(store: _TokenGrants, token_hash: str) -> Grant | None:
    """The store's record of a token, in whichever organization issued it (token hashes are unique)."""
    found = store.token_grant(token_hash)
    if found is None:
        return None
    return Grant(
        scope=found.organization, feed=found.feed, revoked=found.revoked,
        output=view_output(found.feed, found.filter),
    )


class HeldGrants:
    """:meth:`FeedLibrary.grant` and :meth:`FeedLibrary.grant_now` of a library holding its grants in ``_grants``."""

    _grants: TokenCache

    def grant(self, token_hash: str) -> Grant | None:
        """The store's record of the token (held for the token lifetime)."""
        return self._grants.grant(token_hash)

    def grant_now(self, token_hash: str) -> Grant | _Miss:
        """The held record of the token, if fresh (no store access)."""
        return self._grants.cached(token_hash)


class FileFeeds(HeldGrants):
    """A :class:`FeedLibrary` over feed files on disk and tokens in the state store (``apexcal run``).

    Token grants are held for ``token_ttl`` seconds (:class:`TokenCache`; 0
    reads the store on every request); tokens issued or revoked through the
    same store object drop them at once.
    """

    def __init__(
        self, *, feeds: FeedsSource, tokens: FeedTokenLookup, token_ttl: float = 0.0
    ) -> None:
        self._feeds = feeds
        self._tokens = tokens
        self._cache = FeedFileCache()
        self._held: tuple[float, Mapping[str, Path | ServedFeed]] = (-FEED_MAP_TTL, {})
        # The store's count of tokens issued and revoked through it (test doubles have none).
        counted: Any = tokens
        writes = getattr(type(tokens), "feed_token_writes", None)
        self._grants = TokenCache(
            self._lookup,
            ttl=token_ttl,
            writes=(lambda: counted.feed_token_writes) if writes is not None else None,
        )

    def _lookup(self, token_hash: str) -> Grant | None:
        state = self._tokens.feed_token_state(token_hash)
        if state is None:
            return None
        feed, revoked, filter_ = state
        return Grant(scope="", feed=feed, revoked=revoked, output=view_output(feed, filter_))

    @staticmethod
    def _entry(feeds: Mapping[str, Path | ServedFeed], name: str) -> ServedFeed | None:
        return served_entry(feeds, name)

    def servable(self, scope: str, name: str) -> Servable | None:
        """The configured file of ``name``, read once per version (blocking: ``feeds`` may list directories)."""
        feeds = self._feeds()
        self._held = (time.monotonic(), feeds)
        served = self._entry(feeds, name)
        if served is None:
            return None
        return Servable(version=self._cache.load(served.path), max_age=served.max_age)

    def servable_now(self, scope: str, name: str) -> Servable | _Miss | None:
        """The file of ``name`` if the version read last is still the file's (one ``stat``), else :data:`MISS`.

        The feed map is the one :meth:`servable` read within the last
        ``FEED_MAP_TTL`` seconds (``feeds`` may list directories, which the
        event loop does not wait for): a feed dropped from the config is served
        at most that much longer; a name it does not hold, a missing file or a
        changed one go to :meth:`servable`.
        """
        at, feeds = self._held
        if time.monotonic() - at >= FEED_MAP_TTL:
            return MISS
        served = self._entry(feeds, name)
        if served is None:
            return MISS
        version = self._cache.current(served.path)
        if version is None:
            return MISS
        if isinstance(version, _Miss):
            return MISS
        return Servable(version=version, max_age=served.max_age)


def view_output(feed: str, filter_: str | None) -> str | None:
    """The internal name a grant of ``feed`` with this filter is served from (``None``: the feed itself)."""
    return None if filter_ is None else view_name(feed, filter_)


def served_entry(feeds: Mapping[str, Path | ServedFeed], name: str) -> ServedFeed | None:
    """The file of ``name`` in a feed map: a feed's, or that of a filtered view of one (``<feed>~<id>``)."""
    entry = feeds.get(name)
    if entry is None:
        split = split_view_name(name)
        if split is None:
            return None
        base = feeds.get(split[0])
        if base is None:
            return None
        return _view_entry(base if isinstance(base, ServedFeed) else ServedFeed(path=base), split[1])
    if isinstance(entry, ServedFeed):
        return entry
    return ServedFeed(path=entry)


@lru_cache(maxsize=4096)
def _view_entry(base: ServedFeed, vid: str) -> ServedFeed:
    """The file of view ``vid`` of the feed served as ``base`` (held: asked on every request)."""
    return ServedFeed(path=view_path(base.path, vid), max_age=base.max_age)
