"""The state store's tables (SQLAlchemy 2 typed declarative).

These classes are the schema the Alembic migrations under ``migrations/``
build; a test checks that autogenerate finds no difference between the two.
They never leave :mod:`apexcal.state`: the store's methods take and return
frozen dataclasses or the API models instead.

Everything is keyed so that many organizations and many targets can share one
PostgreSQL database: the mirror by the API's ``organization_id``, targets,
records, the journal and feeds by ``organization`` (the key of a config
directory's file; ``''`` for a single config file), and so that a no-change cycle touches only a handful of
rows (``change_seq`` on the mirror, ``mirror_seq_seen`` per target).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

WRITEBACK_STATUSES = ("pending", "sent", "superseded")


class UTCDateTime(TypeDecorator[datetime]):
    """An instant stored in UTC and always read back timezone-aware.

    PostgreSQL keeps ``timestamptz``; SQLite has no time zones, so the value is
    stored as naive UTC (whose ISO text sorts correctly) and made aware on read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the state store keeps instants in UTC")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with constraint names Alembic can rely on."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012  (SQLAlchemy reads this class attribute)
        datetime: UTCDateTime(),
        date: Date(),
        bool: Boolean(),
        dict[str, Any]: JSON(),
    }


class MirrorState(Base):
    """Per organization: pull watermark, last reconcile sweep, mirror change counter."""

    __tablename__ = "mirror_state"

    organization_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    watermark: Mapped[datetime | None]
    last_reconcile_at: Mapped[datetime | None]
    change_seq: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class ActivityRow(Base):
    """The mirror of one CRM activity (kept after deletion, flagged, for revival and diffing)."""

    __tablename__ = "activities"
    __table_args__ = (
        CheckConstraint("id > 0", name="positive_id"),
        Index(None, "organization_id", "change_seq"),
        Index(None, "organization_id", "assigned_to_user_id"),
        Index(None, "organization_id", "activity_type"),
        Index(None, "organization_id", "start_date"),
    )

    organization_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    updated_at: Mapped[datetime]
    deleted: Mapped[bool] = mapped_column(server_default=false())
    deleted_at: Mapped[datetime | None]
    content_hash: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]
    assigned_to_user_id: Mapped[int | None] = mapped_column(BigInteger)
    activity_type: Mapped[str | None] = mapped_column(String(200))
    start_date: Mapped[date | None]
    end_date: Mapped[date | None]
    done: Mapped[bool] = mapped_column(server_default=false())
    change_seq: Mapped[int] = mapped_column(BigInteger)


class ActivityTypeRow(Base):
    """The mirror of one activity type; types that vanish are flagged, never dropped."""

    __tablename__ = "activity_types"

    organization_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    key: Mapped[str] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]
    deleted: Mapped[bool] = mapped_column(server_default=false())
    vanished_at: Mapped[datetime | None]


class ObjectRow(Base):
    """What we know of one object we own on one target (CalDAV collection)."""

    __tablename__ = "objects"
    __table_args__ = (
        Index(None, "organization", "target", "activity_id"),
        Index(None, "organization", "target", "href"),
    )

    organization: Mapped[str] = mapped_column(
        String(100), primary_key=True, server_default=text("''")
    )
    target: Mapped[str] = mapped_column(String(200), primary_key=True)
    uid: Mapped[str] = mapped_column(String(500), primary_key=True)
    activity_id: Mapped[int] = mapped_column(BigInteger)
    href: Mapped[str] = mapped_column(String(1000))
    etag: Mapped[str | None] = mapped_column(Text)
    pushed_hash: Mapped[str | None] = mapped_column(String(64))
    pushed_done: Mapped[bool | None]
    done_seen: Mapped[bool | None]
    kind: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime]
    pending_done: Mapped[bool | None]
    """Completion of an update sent but not yet recorded (write-ahead; see ObjectRecord)."""
    fields: Mapped[dict[str, Any] | None]
    """Per editable field, the hash of the value last pushed or agreed (see ObjectRecord)."""


class TargetStateRow(Base):
    """Per target: sync token, mirror position, health."""

    __tablename__ = "target_state"

    organization: Mapped[str] = mapped_column(
        String(100), primary_key=True, server_default=text("''")
    )
    target: Mapped[str] = mapped_column(String(200), primary_key=True)
    sync_token: Mapped[str | None] = mapped_column(Text)
    mirror_seq_seen: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    last_success_at: Mapped[datetime | None]
    last_summary: Mapped[dict[str, Any] | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_kind: Mapped[str | None] = mapped_column(String(200))
    last_error_at: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_caldav_reconcile_at: Mapped[datetime | None]
    """When the calendar's full listing was last compared with the records."""


class WritebackRow(Base):
    """One completion change detected remotely, to be sent to the CRM."""

    __tablename__ = "writebacks"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'superseded')", name="status_known"),
        Index(None, "organization", "status", "target"),
        Index(None, "organization", "target", "activity_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization: Mapped[str] = mapped_column(String(100), server_default=text("''"))
    target: Mapped[str] = mapped_column(String(200))
    activity_id: Mapped[int] = mapped_column(BigInteger)
    done: Mapped[bool]
    detected_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)


class FieldWritebackRow(Base):
    """Calendar edits of one object's fields, to be sent to the CRM (``PATCH /activities/:id``)."""

    __tablename__ = "field_writebacks"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'superseded')", name="status_known"),
        Index(None, "organization", "status", "target"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization: Mapped[str] = mapped_column(String(100), server_default=text("''"))
    target: Mapped[str] = mapped_column(String(200))
    uid: Mapped[str] = mapped_column(String(500))
    activity_id: Mapped[int] = mapped_column(BigInteger)
    patch: Mapped[dict[str, Any]]
    """The activity's API fields and values to set."""
    agreed: Mapped[dict[str, Any]]
    """Field → hash: what the object record's baseline takes once the CRM holds ``patch``."""
    detected_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)


class GeocodeRow(Base):
    """A cached geocoding answer; a row without coordinates is a cached miss."""

    __tablename__ = "geocode_cache"

    query_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    query: Mapped[str] = mapped_column(Text)
    lat: Mapped[float | None] = mapped_column(Double)
    lng: Mapped[float | None] = mapped_column(Double)
    address: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime]


class FeedTokenRow(Base):
    """A secret feed URL token, stored only as its sha256 hex digest."""

    __tablename__ = "feed_tokens"
    __table_args__ = (Index(None, "organization", "feed"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization: Mapped[str] = mapped_column(String(100), server_default=text("''"))
    feed: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    # The canonical text of the token's view (apexcal.feeds.views), NULL for the whole feed.
    filter: Mapped[str | None] = mapped_column(Text)


class FeedStatusRow(Base):
    """A feed file's last build (and what it was built from), and its feed job's last failure."""

    __tablename__ = "feed_status"

    organization: Mapped[str] = mapped_column(
        String(100), primary_key=True, server_default=text("''")
    )
    feed: Mapped[str] = mapped_column(String(200), primary_key=True)
    etag: Mapped[str | None] = mapped_column(Text)
    built_at: Mapped[datetime | None]
    length: Mapped[int | None] = mapped_column(BigInteger)
    parent: Mapped[str | None] = mapped_column(String(200))
    signature: Mapped[str | None] = mapped_column(String(64))
    events: Mapped[int | None] = mapped_column(Integer)
    mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    last_error_at: Mapped[datetime | None]
    last_error_kind: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)


class FeedBodyRow(Base):
    """The current version of a feed built by a worker: body, gzip form, ETag, Last-Modified.

    One row per feed, replaced in one statement per new version, so a reader
    sees the old version until the writer commits and never a mix of two.
    """

    __tablename__ = "feed_bodies"

    organization: Mapped[str] = mapped_column(
        String(100), primary_key=True, server_default=text("''")
    )
    feed: Mapped[str] = mapped_column(String(200), primary_key=True)
    parent: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(Text)
    modified_at: Mapped[datetime]
    length: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    gzip: Mapped[bytes] = mapped_column(LargeBinary)


def table_of(model: type[Base]) -> Table:
    """The Core table behind a mapped class (typed for mypy)."""
    return cast(Table, model.__table__)
