"""Feed token grants held in memory for a bounded time, for both feed servers.

A token found in the store is trusted for ``ttl`` seconds (``[server]
token_cache``, at most a minute), then looked up again: a URL revoked by
another process (``apexcal feed revoke``, another server) stops working
within that time.  A token issued or revoked through the very store object
the server reads (``writes``, a counter the store moves on each) empties the
cache at once.  Unknown tokens are not cached (a new URL works at once); at
most ``max_entries`` grants are kept, least recently used dropped first.

:meth:`TokenCache.cached` answers from memory only (the event loop's fast
path); :meth:`TokenCache.grant` reads the store on a miss (blocking).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

DEFAULT_TOKEN_TTL = 30.0
DEFAULT_MAX_TOKENS = 100_000


@dataclass(frozen=True, kw_only=True)
class Grant:
    """What a token opens: the feed it was issued for, in which scope, and whether revoked.

    ``scope`` is the organization key with a config directory, ``''`` for the
    daemon's single organization.  ``output`` is the internal name of the
    filtered view the token serves (:func:`apexcal.feeds.views.view_name`,
    worked out once when the grant is read), ``None`` for the whole feed.
    """

    scope: str
    feed: str
    revoked: bool
    output: str | None = None


class _Miss:
    """Not in memory: ask the store."""

    def __repr__(self) -> str:
        return "MISS"


MISS: Final = _Miss()


class TokenCache:
    """Grants by token hash, each trusted for ``ttl`` seconds after it was read."""

    def __init__(
        self,
        lookup: Callable[[str], Grant | None],
        *,
        ttl: float = DEFAULT_TOKEN_TTL,
        max_entries: int = DEFAULT_MAX_TOKENS,
        writes: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._max = max_entries
        self._writes = writes
        self._seen_writes = writes() if writes is not None else 0
        self._clock = clock
        self._lock = threading.Lock()
        self._grants: OrderedDict[str, tuple[float, Grant]] = OrderedDict()

    def _current(self) -> None:
        """Drop everything when a token was issued or revoked in this process since the last look."""
        if self._writes is not None:
            now_writes = self._writes()
            if now_writes != self._seen_writes:
                with self._lock:
                    self._grants.clear()
                    self._seen_writes = now_writes

    def cached(self, token_hash: str) -> Grant | _Miss:
        """The grant held for ``token_hash`` while younger than ``ttl``, else :data:`MISS` (no I/O)."""
        self._current()
        entry = self._grants.get(token_hash)
        if entry is None or self._clock() - entry[0] >= self._ttl:
            return MISS
        return entry[1]

    def grant(self, token_hash: str) -> Grant | None:
        """The token's grant, from memory while fresh, else from the store (blocking)."""
        held = self.cached(token_hash)
        if not isinstance(held, _Miss):
            with self._lock:
                if token_hash in self._grants:
                    self._grants.move_to_end(token_hash)
            return held
        now = self._clock()
        writes = self._writes() if self._writes is not None else 0
        found = self._lookup(token_hash)
        with self._lock:
            if found is None:
                self._grants.pop(token_hash, None)
                return None
            if writes != self._seen_writes:
                return found  # a write raced the read: serve it, keep nothing
            if self._ttl > 0:
                self._grants[token_hash] = (now, found)
                self._grants.move_to_end(token_hash)
                while len(self._grants) > self._max:
                    self._grants.popitem(last=False)
        return found
