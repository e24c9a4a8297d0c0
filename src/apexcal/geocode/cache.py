"""Geocoding answers and their cache: the pure part of :mod:`apexcal.geocode`.

:class:`CachedGeocoder` puts a :class:`GeocodeCache` in front of a provider,
caching misses too (negative caching) for a TTL so a bad address is not asked
for again and again.  The TTLs live here, once: :data:`TTL` for a point,
:data:`NEGATIVE_TTL` for a miss.  :class:`MemoryGeocodeCache` is the
in-process cache; :class:`StoreGeocodeCache` is the persistent one over any
:class:`GeocodeStore` (the state store implements that Protocol).  Nothing
here does I/O of its own.
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from apexcal.apex.models import GeoPoint
from apexcal.clock import Clock, utcnow

log = structlog.get_logger("apexcal.geocode")

#: How long a found point is cached.
TTL = timedelta(days=30)
#: How long a miss is cached (shorter: the provider may learn the place).
NEGATIVE_TTL = timedelta(days=1)


class Geocoder(Protocol):
    """Anything that turns a location text into a point, or ``None``; it never raises."""

    def lookup(self, query: str) -> GeoPoint | None:
        """The point for ``query``, or ``None`` when unknown or on any failure."""
        ...


@dataclass(frozen=True, kw_only=True)
class CacheEntry:
    """A cached answer: a point, or ``None`` for a remembered miss."""

    point: GeoPoint | None


class GeocodeCache(Protocol):
    """Cache of geocoding answers keyed by normalised query, misses included."""

    def get(self, key: str) -> CacheEntry | None:
        """The live entry for ``key`` (``None`` when absent or expired)."""
        ...

    def put(self, key: str, point: GeoPoint | None) -> None:
        """Remember ``point`` (or a miss, ``None``) for ``key``."""
        ...


def normalize_query(query: str) -> str:
    """The cache key of a query: NFKC, case-folded, single-spaced."""
    return " ".join(unicodedata.normalize("NFKC", query).casefold().split())


class MemoryGeocodeCache:
    """In-process :class:`GeocodeCache` with a TTL for hits and a (shorter) one for misses."""

    def __init__(
        self,
        *,
        ttl: timedelta = TTL,
        negative_ttl: timedelta = NEGATIVE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl.total_seconds()
        self._negative_ttl = negative_ttl.total_seconds()
        self._clock = clock
        self._entries: dict[str, tuple[float, GeoPoint | None]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> CacheEntry | None:
        """The live entry for ``key``, or ``None``."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            expires, point = found
            if self._clock() >= expires:
                del self._entries[key]
                return None
            return CacheEntry(point=point)

    def put(self, key: str, point: GeoPoint | None) -> None:
        """Remember an answer until its TTL runs out."""
        ttl = self._ttl if point is not None else self._negative_ttl
        with self._lock:
            self._entries[key] = (self._clock() + ttl, point)


class CachedGeocoder:
    """A provider behind a cache: each distinct query reaches the provider once per TTL."""

    def __init__(self, provider: Geocoder, cache: GeocodeCache) -> None:
        self._provider = provider
        self._cache = cache

    def lookup(self, query: str) -> GeoPoint | None:
        """The cached answer, else the provider's (cached, misses too); never raises."""
        key = normalize_query(query)
        if not key:
            return None
        try:
            entry = self._cache.get(key)
            if entry is not None:
                return entry.point
            point = self._provider.lookup(query)
            self._cache.put(key, point)
        except Exception as exc:
            log.warning("geocode.failed", error=type(exc).__name__)
            return None
        return point


class GeocodeStore(Protocol):
    """Persistent storage of geocoding answers with an expiry (the state store implements it)."""

    def geocode_get(self, query: str, now: datetime) -> tuple[bool, GeoPoint | None]:
        """``(hit, value)``: a live answer for ``query`` (``value`` ``None`` for a cached miss)."""
        ...

    def geocode_put(self, query: str, value: GeoPoint | None, expires_at: datetime) -> None:
        """Remember an answer (``None``: a miss) until ``expires_at``."""
        ...


class StoreGeocodeCache:
    """A :class:`GeocodeStore` as a :class:`GeocodeCache`: persistent, with TTLs for hits and misses."""

    def __init__(
        self,
        store: GeocodeStore,
        *,
        ttl: timedelta = TTL,
        negative_ttl: timedelta = NEGATIVE_TTL,
        clock: Clock = utcnow,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._clock = clock

    def get(self, key: str) -> CacheEntry | None:
        """The live entry for ``key``, or ``None`` when absent or expired."""
        hit, point = self._store.geocode_get(key, self._clock())
        return CacheEntry(point=point) if hit else None

    def put(self, key: str, point: GeoPoint | None) -> None:
        """Remember ``point`` (or a miss) for the hit or the miss TTL."""
        ttl = self._ttl if point is not None else self._negative_ttl
        self._store.geocode_put(key, point, self._clock() + ttl)
