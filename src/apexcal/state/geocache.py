"""The geocode cache: answers (and misses) of a geocoding provider, with an expiry.

:class:`GeocachePart` implements :class:`apexcal.geocode.cache.GeocodeStore`
(the TTLs are decided there, not here).

A miss is cached too (a row without coordinates), so an address the
provider cannot place is not asked for again before it expires.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete, select

from apexcal.apex.models import GeoPoint
from apexcal.state._sql import upsert
from apexcal.state.part import StorePart
from apexcal.state.tables import GeocodeRow, table_of

_G = table_of(GeocodeRow)


def query_hash(query: str) -> str:
    """The cache key of a query: sha256 of its normalised text (case and spacing ignored)."""
    normal = " ".join(query.split()).casefold()
    return hashlib.sha256(normal.encode()).hexdigest()


class GeocachePart(StorePart):
    """The geocode cache."""

    def geocode_get(self, query: str, now: datetime) -> tuple[bool, GeoPoint | None]:
        """``(hit, value)``: a fresh cached answer (``value`` ``None`` for a cached miss)."""
        with self._db.read("read geocode cache") as conn:
            row = conn.execute(
                select(_G.c.lat, _G.c.lng, _G.c.address).where(
                    _G.c.query_hash == query_hash(query), _G.c.expires_at > now
                )
            ).first()
        if row is None:
            return False, None
        if row.lat is None or row.lng is None:
            return True, None
        return True, GeoPoint(lat=row.lat, lng=row.lng, address=row.address)

    def geocode_put(self, query: str, value: GeoPoint | None, expires_at: datetime) -> None:
        """Cache an answer (``None``: a miss) until ``expires_at``."""
        with self._db.write("write geocode cache") as conn:
            upsert(
                conn,
                _G,
                {
                    "query_hash": query_hash(query),
                    "query": query,
                    "lat": None if value is None else value.lat,
                    "lng": None if value is None else value.lng,
                    "address": None if value is None else value.address,
                    "expires_at": expires_at,
                },
                keys=("query_hash",),
            )

    def geocode_purge(self, now: datetime) -> int:
        """Drop expired entries; return how many."""
        with self._db.write("purge geocode cache") as conn:
            return conn.execute(delete(_G).where(_G.c.expires_at <= now)).rowcount
