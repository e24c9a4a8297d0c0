"""The Nominatim geocoder (opt-in): OpenStreetMap's search API under its usage policy."""

from __future__ import annotations

import threading
import time

import httpx
import structlog

from apexcal import USER_AGENT
from apexcal.apex.models import GeoPoint

log = structlog.get_logger("apexcal.geocode")

NOMINATIM_URL = "https://nominatim.openstreetmap.org/search"


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
