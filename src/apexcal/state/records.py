"""The values the state store takes and returns: frozen, keyword-only dataclasses.

Callers never see SQLAlchemy rows; these records are plain data that the pure
layers (planner, mapping) can use without importing the database.  The
per-object record is the planner's own :class:`~apexcal.sync.plan_model.ObjectRecord`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from apexcal.apex.models import Activity
from apexcal.sync.plan_model import ObjectRecord as ObjectRecord  # the one per-object record

WritebackStatus = Literal["pending", "sent", "superseded"]
ObjectKind = Literal["VEVENT", "VTODO"]


@dataclass(frozen=True, kw_only=True)
class UpsertResult:
    """What an upsert into the mirror did.

    ``changed`` lists the ids written (new, changed or revived), in input order;
    ``unchanged`` counts the activities whose content hash was already stored;
    ``seq`` is the mirror change sequence after the upsert.
    """

    changed: tuple[int, ...]
    unchanged: int
    seq: int = 0


@dataclass(frozen=True, kw_only=True)
class MirrorChanges:
    """The mirror's changes after a given sequence number.

    ``seq`` is the position to remember (``set_mirror_seq_seen``) once the
    changes are handled; ``changed`` holds live activities that are new or
    changed, ``deleted`` the ids marked deleted since.
    """

    seq: int
    changed: tuple[Activity, ...] = ()
    deleted: tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        """True when nothing changed."""
        return not self.changed and not self.deleted


@dataclass(frozen=True, kw_only=True)
class TargetState:
    """A target's sync position and health (defaults for a target never run)."""

    target: str
    sync_token: str | None = None
    mirror_seq_seen: int = 0
    last_success_at: datetime | None = None
    last_summary: Mapping[str, Any] | None = None
    last_error: str | None = None
    last_error_kind: str | None = None
    last_error_at: datetime | None = None
    consecutive_failures: int = 0
    last_caldav_reconcile_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class WritebackEntry:
    """One journaled completion change for the CRM."""

    id: int
    target: str
    activity_id: int
    done: bool
    detected_at: datetime
    status: WritebackStatus
    sent_at: datetime | None = None
    """When the API accepted it (``sent``); on a ``pending`` entry, when an attempt whose
    outcome is unknown started (the answer was lost, or the process died waiting for it)."""
    attempts: int = 0
    last_error: str | None = None

    @property
    def in_doubt(self) -> bool:
        """Pending, but the API may have applied it: the CRM must be read before it is sent again."""
        return self.status == "pending" and self.sent_at is not None


@dataclass(frozen=True, kw_only=True)
class FieldWritebackEntry:
    """One journaled calendar edit of an object's fields, for the CRM (``PATCH /activities/:id``)."""

    id: int
    target: str
    uid: str
    activity_id: int
    patch: Mapping[str, Any]
    """The activity's API fields and the values to set."""
    agreed: Mapping[str, str]
    """Field → hash the object record's baseline takes once the CRM holds ``patch``."""
    detected_at: datetime
    status: WritebackStatus
    sent_at: datetime | None = None
    """As :attr:`WritebackEntry.sent_at`: on a pending entry, the start of an attempt in doubt."""
    attempts: int = 0
    last_error: str | None = None

    @property
    def in_doubt(self) -> bool:
        """Pending, but the API may have applied it: the CRM must be read before it is sent again."""
        return self.status == "pending" and self.sent_at is not None


@dataclass(frozen=True, kw_only=True)
class FeedToken:
    """A feed URL token as stored: its hash, never the token itself."""

    id: int
    feed: str
    token_hash: str = field(repr=False)
    label: str | None
    created_at: datetime
    revoked_at: datetime | None = None
    filter: str | None = None
    """The canonical text of the view this token serves (``None``: the whole feed)."""

    @property
    def active(self) -> bool:
        """True while the token is not revoked."""
        return self.revoked_at is None


@dataclass(frozen=True, kw_only=True)
class TokenGrant:
    """What a feed token opens, whatever the organization: its organization, feed, whether revoked, its filter."""

    organization: str
    feed: str
    revoked: bool
    filter: str | None = None


@dataclass(frozen=True, kw_only=True)
class FeedBody:
    """One version of a feed kept in the database (worker mode): bytes, gzip form, tags.

    ``version`` grows by one with every new body of the feed, so a server
    holding a copy can tell with a cheap query whether it is still current.
    """

    feed: str
    parent: str
    version: int
    etag: str
    modified_at: datetime
    body: bytes = field(repr=False)
    gzip: bytes = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class FeedStatus:
    """A feed file's last build (ETag, when, bytes, events, inputs) and its feed job's last failure.

    Build fields are ``None`` for a feed whose job failed before it was ever
    built.  ``parent`` is the configured feed a per-user file belongs to (the
    feed itself for its own file); ``signature`` hashes what the build was
    made from and ``mtime_ns`` is the file's after it, so an unchanged feed is
    not built again.
    """

    feed: str
    etag: str | None = None
    built_at: datetime | None = None
    length: int | None = None
    parent: str | None = None
    signature: str | None = None
    events: int | None = None
    mtime_ns: int | None = None
    last_error_at: datetime | None = None
    last_error_kind: str | None = None
    last_error: str | None = None

    @property
    def last_success_at(self) -> datetime | None:
        """The last build: a feed job's success (named as for targets, so status reads both alike)."""
        return self.built_at
