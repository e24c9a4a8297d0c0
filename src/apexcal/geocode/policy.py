"""When to geocode and with what: the one policy sync targets and feeds share.

Only physical places the API left without a point are looked up (not empty,
not an online meeting, not a meeting link).  Answers come from the store's
cache first; on a miss the ``offline`` gazetteer is asked (loaded on first
use), and ``nominatim`` only where the network is allowed (sync cycles, at
most :data:`ONLINE_BUDGET` lookups each, since Nominatim answers one a
second) — a feed build reads Nominatim's answers from the cache only.  Each
distinct text is resolved once per :class:`Geocoding`, and geocoding never
fails or blocks a cycle or a build: any error is a ``None``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from apexcal.apex.models import Activity, GeoPoint
from apexcal.geocode.cache import (
    CachedGeocoder,
    GeocodeStore,
    StoreGeocodeCache,
    log,
    normalize_query,
)
from apexcal.ical.location import is_online, meeting_url

if TYPE_CHECKING:
    from apexcal.config import Config

GeocoderKind = Literal["offline", "nominatim", "none"]

#: Nominatim lookups one sync cycle waits for (its usage policy allows one a second).
ONLINE_BUDGET = 5


def place_to_geocode(activity: Activity) -> str | None:
    """The location text to look up for ``activity``, or ``None`` when it needs no lookup.

    Only physical places the API left without a point: not empty, not an
    online meeting, not a meeting link.
    """
    text = (activity.location or "").strip()
    if activity.location_geocoded is not None or not text or is_online(text) or meeting_url(text):
        return None
    return text


def nominatim_contact(config: Config) -> str:
    """Who the Nominatim User-Agent names: the public URL, else the installation's UID domain."""
    server = config.server
    if server and server.public_url:
        return server.public_url
    return "https://" + config.source.effective_uid_domain


class Geocoding:
    """A point for each activity that needs one, by the policy of the module docstring."""

    def __init__(
        self,
        kind: GeocoderKind,
        store: GeocodeStore,
        *,
        network: bool,
        contact: str = "",
        budget: int = ONLINE_BUDGET,
    ) -> None:
        self._kind = kind
        self._cache = StoreGeocodeCache(store)
        self._network = network
        self._contact = contact
        self._budget = budget
        self._provider: CachedGeocoder | None = None
        self._seen: dict[str, GeoPoint | None] = {}

    @classmethod
    def for_config(cls, config: Config, store: GeocodeStore, *, network: bool) -> Geocoding:
        """The geocoding of ``config``'s ``[mapping] geocoder``; ``network=False`` for feed builds."""
        return cls(
            config.mapping.geocoder, store, network=network, contact=nominatim_contact(config)
        )

    def point(self, activity: Activity) -> GeoPoint | None:
        """The point to map ``activity`` with, or ``None``; never raises."""
        text = place_to_geocode(activity)
        if self._kind == "none" or text is None:
            return None
        key = normalize_query(text)
        if key not in self._seen:
            self._seen[key] = self._resolve(text, key)
        return self._seen[key]

    def _resolve(self, text: str, key: str) -> GeoPoint | None:
        try:
            entry = self._cache.get(key)
            if entry is not None:
                return entry.point
            if self._kind == "nominatim":
                if not self._network or self._budget <= 0:
                    return None
                self._budget -= 1
            return self._lookup(text)
        except Exception as exc:  # geocoding is a nicety: it never fails a sync or a feed
            log.warning("geocode.failed", error=type(exc).__name__)
            return None

    def _lookup(self, text: str) -> GeoPoint | None:
        if self._provider is None:
            if self._kind == "nominatim":
                from apexcal.geocode.nominatim import NominatimGeocoder

                self._provider = CachedGeocoder(NominatimGeocoder(contact=self._contact), self._cache)
            else:
                from apexcal.geocode.offline import OfflineGeocoder

                self._provider = CachedGeocoder(OfflineGeocoder(), self._cache)
        return self._provider.lookup(text)
