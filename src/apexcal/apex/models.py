"""Typed models of the AchieveApex API's records.

Tolerant where the API is loose (unknown fields are ignored, most fields may be
null) and strict where correctness depends on it.  A malformed value in a
field that only changes what a calendar object *says* (subject, notes,
location, the joined names: :data:`DROPPABLE_FIELDS`) is set to null and
logged as ``apex.field_dropped``, so the rest of the record still reaches
calendars.  A malformed value anywhere else — ids, organization, timestamps,
and every field that decides *whether* or *when* an activity is in a
calendar (its type, people, dates and times, duration, completion) — makes
the whole record :class:`~apexcal.errors.InvalidRecord`, reported with its
id, field and reason: nulling such a field would move the activity out of a
target's filter or make it unmappable, and its calendar object would be
deleted, although the CRM never deleted anything.  The mirror then keeps the
record's last valid version until the API serves a valid one again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from apexcal.apex.keys import (
    type_key as type_key,  # re-exported: the key is part of the API vocabulary
)
from apexcal.errors import InvalidRecord

PositiveId = Annotated[int, Field(strict=True, gt=0)]


def parse_timestamp(value: object) -> datetime:
    """Parse an API timestamp (``2025-03-28T09:30:15.391Z``) into an aware UTC datetime."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"not an ISO 8601 timestamp: {value!r}") from exc
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    if dt.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return dt.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """Format an instant the way the API does: millisecond precision, ``Z`` suffix."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    droppable: ClassVar[frozenset[str]] = frozenset()
    """Fields a malformed value of which is set to null instead of rejecting the record."""


class GeoPoint(_Record):
    """``location_geocoded``: a point and, when known, its address."""

    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)
    address: str | None = None


class UserRef(_Record):
    """A joined user (``created_by_user``, ``assigned_to_user``)."""

    id: int
    full_name: str | None = None
    email: str | None = None


class DealRef(_Record):
    id: int
    name: str | None = None
    stage: str | None = None


class ContactRef(_Record):
    id: int
    full_name: str | None = None
    email: str | None = None


class CompanyRef(_Record):
    id: int
    name: str | None = None
    website: str | None = None


class _Timestamped(_Record):
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None

    @field_validator("created_at", "updated_at", mode="before")
    @classmethod
    def _instant(cls, value: object) -> datetime:
        return parse_timestamp(value)

    @field_validator("deleted_at", mode="before")
    @classmethod
    def _optional_instant(cls, value: object) -> datetime | None:
        return None if value is None else parse_timestamp(value)


class Activity(_Timestamped):
    """A CRM activity: a call, meeting, task or any custom type."""

    id: PositiveId
    organization_id: PositiveId
    created_by_user_id: int | None = None
    assigned_to_user_id: int | None = None
    subject: str | None = None
    note: str | None = None
    public_description: str | None = None
    location: str | None = None
    location_geocoded: GeoPoint | None = None
    start_date: date | None = None
    start_time: time | None = None
    end_date: date | None = None
    end_time: time | None = None
    duration: int | None = Field(default=None, ge=0)
    deal_id: int | None = None
    contact_id: int | None = None
    company_id: int | None = None
    activity_type: str | None = None
    done: bool = False
    created_by_user: UserRef | None = None
    assigned_to_user: UserRef | None = None
    deal: DealRef | None = None
    contact: ContactRef | None = None
    company: CompanyRef | None = None

    droppable: ClassVar[frozenset[str]] = frozenset(
        {
            "subject", "note", "public_description", "location", "location_geocoded",
            "created_by_user", "assigned_to_user", "deal", "contact", "company",
        }
    )

    @field_validator("done", mode="before")
    @classmethod
    def _null_done(cls, value: object) -> object:
        return False if value is None else value

    @field_validator("location_geocoded", mode="before")
    @classmethod
    def _loose_geocode(cls, value: object) -> object:
        # A geocode without both coordinates carries no point: treat as absent.
        if isinstance(value, Mapping) and (value.get("lat") is None or value.get("lng") is None):
            return None
        return value

    def content_hash(self) -> str:
        """A stable hash of everything the activity says (joined objects included)."""
        return _hash(self.model_dump(mode="json"))


class ActivityType(_Timestamped):
    """A (possibly custom) activity type of an organization."""

    id: PositiveId
    organization_id: PositiveId
    name: str
    color: str | None = None
    icon_key: str | None = None
    activities_count: int | None = None

    droppable: ClassVar[frozenset[str]] = frozenset({"color", "icon_key", "activities_count"})

    @property
    def key(self) -> str:
        """The lowercase key activities use in ``activity_type`` (``Customer Training`` → ``customer_training``)."""
        return type_key(self.name)

    def content_hash(self) -> str:
        """A stable hash of the type (``activities_count`` excluded: it is not content)."""
        return _hash(self.model_dump(mode="json", exclude={"activities_count"}))


def _hash(data: Any) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def _record_id(raw: object) -> object:
    return raw.get("id") if isinstance(raw, Mapping) else None


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(record)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


_R = TypeVar("_R", bound=_Record)

DROPPABLE_FIELDS = Activity.droppable
"""Activity fields whose malformed values are set to null: they change what an object says, never whether or when."""


def _parse(model: type[_R], kind: str, raw: object) -> _R:
    """Validate ``raw``; a bad droppable field is nulled (and logged), any other bad field rejects the record.

    One bad cosmetic value (a latitude of 95, a numeric subject) must not hide
    the whole activity: the calendar would keep a stale copy.  The record is
    validated once more with the offending fields set to null; if that still
    fails, it is invalid after all.
    """
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc
    errors = first.errors(include_url=False)
    fields = {str(err["loc"][0]) for err in errors if err["loc"]}
    if not isinstance(raw, Mapping) or not fields <= model.droppable or any(not err["loc"] for err in errors):
        raise InvalidRecord(kind, _record_id(raw), _reason(first)) from None
    cleaned = {key: (None if key in fields else value) for key, value in raw.items()}
    try:
        record = model.model_validate(cleaned)
    except ValidationError as exc:
        raise InvalidRecord(kind, _record_id(raw), _reason(first) + "; then " + _reason(exc)) from None
    # Imported here so the pure iCalendar layer, which imports these models, stays free of it.
    import structlog

    log = structlog.get_logger()
    for name in sorted(fields):
        reasons = [
            f"{'.'.join(str(p) for p in err['loc'][1:]) or name}: {err['msg']}"
            for err in errors
            if err["loc"] and str(err["loc"][0]) == name
        ]
        log.warning("apex.field_dropped", kind=kind, id=_record_id(raw), field=name, reason="; ".join(reasons))
    return record


def parse_activity(raw: object) -> Activity:
    """Validate one activity record; see :func:`_parse` for bad fields.

    Raises :class:`InvalidRecord` naming the id, field and reason when a field
    outside :data:`DROPPABLE_FIELDS` is missing or malformed; a malformed
    droppable field is set to null with an ``apex.field_dropped`` warning.
    """
    return _parse(Activity, "activity", raw)


def parse_activity_type(raw: object) -> ActivityType:
    """Validate one activity type record, as :func:`parse_activity` does (only colour, icon and count are droppable)."""
    return _parse(ActivityType, "activity type", raw)
