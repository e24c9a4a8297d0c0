"""What the CRM wants on a target: its mapping options, and geocodes filled in before mapping.

:func:`mapping_options` turns a target's settings and the config's ``[mapping]``
table into the pure mapping's options; :func:`settings_hash` fingerprints
everything that decides a target's bytes and membership, so a change to it
makes the next cycle plan the whole target again.  :class:`Geocoding` fills a
missing ``location_geocoded`` for physical locations (offline gazetteer by
default, Nominatim when configured) and never fails or blocks a cycle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import structlog

from apexcal.apex.models import Activity, GeoPoint
from apexcal.config import Config, TargetConfig
from apexcal.geocode import place_to_geocode
from apexcal.ical.mapping import MappingOptions
from apexcal.state import Store

log = structlog.get_logger(__name__)

# Nominatim answers at most one lookup a second: bound the lookups one cycle waits for.
_ONLINE_GEOCODE_BUDGET = 5


def mapping_options(config: Config, target: TargetConfig, *, tasks_as: str | None = None) -> MappingOptions:
    """The mapping options of a target (its privacy and tasks, the config's mapping table)."""
    m = config.mapping
    return MappingOptions(
        timezone=config.source.timezone,
        uid_domain=config.source.effective_uid_domain,
        privacy=target.privacy,
        tasks_as="events" if (tasks_as or target.tasks_as) == "events" else "todos",
        components=dict(m.components),
        summary_template=m.summary,
        activity_url_template=m.activity_url,
        default_duration=m.default_duration,
        max_note_bytes=m.max_note_bytes,
    )


def settings_hash(options: MappingOptions, target: TargetConfig) -> str:
    """A fingerprint of what decides a target's bytes and membership: change it, replan everything."""
    doc = {
        "options": repr(options),
        "filter": target.filter,
        "url": target.url,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]


class Geocoding:
    """Fills a missing ``location_geocoded`` for physical locations; never fails a cycle."""

    def __init__(self, config: Config, store: Store) -> None:
        self._kind = config.mapping.geocoder
        # The config has no contact key for Nominatim's usage policy: name the installation.
        server = config.server
        self._contact = (server.public_url if server and server.public_url else None) or (
            "https://" + config.source.effective_uid_domain
        )
        self._store = store
        self._lookup: Callable[[str], GeoPoint | None] | None = None
        self._budget = _ONLINE_GEOCODE_BUDGET

    def point(self, activity: Activity) -> GeoPoint | None:
        text = place_to_geocode(activity)
        if self._kind == "none" or text is None:
            return None
        try:
            return self._resolve(text)
        except Exception as exc:  # geocoding is a nicety: it never fails a sync
            log.warning("sync.geocode_failed", error=type(exc).__name__)
            return None

    def _resolve(self, text: str) -> GeoPoint | None:
        from apexcal.geocode import CachedGeocoder, NominatimGeocoder, OfflineGeocoder
        from apexcal.state import StoreGeocodeCache

        if self._lookup is None:
            provider: OfflineGeocoder | NominatimGeocoder = (
                NominatimGeocoder(contact=self._contact) if self._kind == "nominatim" else OfflineGeocoder()
            )
            self._lookup = CachedGeocoder(provider, StoreGeocodeCache(self._store)).lookup
        if self._kind == "nominatim":
            if self._budget <= 0:
                return None
            self._budget -= 1
        return self._lookup(text)
