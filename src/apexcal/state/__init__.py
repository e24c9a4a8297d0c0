"""The state store: CRM mirror, per-target records and state, writeback journal, caches.

SQLAlchemy 2 tables with Alembic migrations applied on open; SQLite by
default, PostgreSQL through psycopg 3.  Callers use :class:`Store` and the
records of :mod:`apexcal.state.records`; nothing else here is public.
"""

from __future__ import annotations

from apexcal.errors import StoreFailure, StoreUnavailable, TargetBusy
from apexcal.state.records import (
    FeedBody,
    FeedStatus,
    FeedToken,
    FieldWritebackEntry,
    MirrorChanges,
    ObjectRecord,
    TargetState,
    TokenGrant,
    UpsertResult,
    WritebackEntry,
    WritebackStatus,
)
from apexcal.state.store import Store

__all__ = [
    "FeedBody",
    "FeedStatus",
    "FeedToken",
    "FieldWritebackEntry",
    "MirrorChanges",
    "ObjectRecord",
    "Store",
    "StoreFailure",
    "StoreUnavailable",
    "TargetBusy",
    "TargetState",
    "TokenGrant",
    "UpsertResult",
    "WritebackEntry",
    "WritebackStatus",
]
