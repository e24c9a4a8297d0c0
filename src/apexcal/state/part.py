"""What every part of the state store shares (:class:`StorePart`): the database, the clock, the organization key."""

from __future__ import annotations

from apexcal.clock import Clock
from apexcal.state.database import Database


class StorePart:
    """What every part of the store shares: the database, the clock and the organization key.

    ``_org`` scopes targets, records, the journal and feeds (``''``: the
    single organization of a ``--config FILE`` setup); the mirror is keyed by
    the API's ``organization_id`` instead.
    """

    _org: str = ""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
