"""The shapes of the emulator's records: fields, query schemas, body validation, joins.

Records are stored as plain dicts holding exactly the documented base fields
(``ACTIVITY_FIELDS`` / ``TYPE_FIELDS``).  Joined objects are added only to what
is sent: the full ones on get, the lighter ones on find with
``fastJoinForActivityList=true``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, time
from typing import Any

from apexcal.emulator.query import Kind, Schema
from apexcal.errors import EmulatorQueryError

ACTIVITY_FIELDS: tuple[str, ...] = (
    "id",
    "organization_id",
    "created_by_user_id",
    "assigned_to_user_id",
    "subject",
    "note",
    "public_description",
    "location",
    "location_geocoded",
    "start_date",
    "start_time",
    "end_date",
    "end_time",
    "duration",
    "deal_id",
    "contact_id",
    "company_id",
    "activity_type",
    "done",
    "created_at",
    "updated_at",
    "deleted_at",
)

TYPE_FIELDS: tuple[str, ...] = (
    "id",
    "name",
    "color",
    "icon_key",
    "organization_id",
    "created_at",
    "updated_at",
    "deleted_at",
)

ACTIVITY_SCHEMA = Schema(
    fields={
        "id": Kind.INT,
        "organization_id": Kind.INT,
        "created_by_user_id": Kind.INT,
        "assigned_to_user_id": Kind.INT,
        "subject": Kind.TEXT,
        "note": Kind.TEXT,
        "public_description": Kind.TEXT,
        "location": Kind.TEXT,
        "location_geocoded": Kind.OBJECT,
        "start_date": Kind.DATE,
        "start_time": Kind.TIME,
        "end_date": Kind.DATE,
        "end_time": Kind.TIME,
        "duration": Kind.INT,
        "deal_id": Kind.INT,
        "contact_id": Kind.INT,
        "company_id": Kind.INT,
        "activity_type": Kind.TEXT,
        "done": Kind.BOOL,
        "created_at": Kind.INSTANT,
        "updated_at": Kind.INSTANT,
        "deleted_at": Kind.INSTANT,
    },
    partial=frozenset({"subject"}),
    extra_params=frozenset({"fastJoinForActivityList"}),
)

TYPE_SCHEMA = Schema(
    fields={
        "id": Kind.INT,
        "name": Kind.TEXT,
        "color": Kind.TEXT,
        "icon_key": Kind.TEXT,
        "organization_id": Kind.INT,
        "created_at": Kind.INSTANT,
        "updated_at": Kind.INSTANT,
        "deleted_at": Kind.INSTANT,
    },
    partial=frozenset({"name"}),
)

ICON_KEYS = frozenset(
    {
        "phone",
        "mail",
        "calendar",
        "users",
        "check-square",
        "map-pin",
        "clipboard",
        "coffee",
        "message-circle",
        "video",
        "file-text",
        "award",
        "graduation-cap",
    }
)

# Written by the server, never by a client: silently ignored in bodies (Feathers
# services strip them in hooks), as are the joined objects a client may echo back.
_READ_ONLY = frozenset(
    {
        "id",
        "created_at",
        "updated_at",
        "deleted_at",
        "created_by_user_id",
        "created_by_user",
        "assigned_to_user",
        "deal",
        "contact",
        "company",
        "activities_count",
    }
)

_WRITABLE_ACTIVITY: dict[str, Kind] = {
    k: v
    for k, v in ACTIVITY_SCHEMA.fields.items()
    if k not in _READ_ONLY and k != "organization_id"
}
_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")


def _check(field: str, kind: Kind, value: Any) -> Any:
    """Validate one body value strictly (JSON types, not URL strings)."""
    if value is None:
        if field in ("done",):
            raise EmulatorQueryError(f"'{field}' must be true or false")
        return None
    bad = EmulatorQueryError(f"Invalid value for '{field}': {value!r}")
    if kind is Kind.INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EmulatorQueryError(f"'{field}' must be an integer, got {value!r}")
        if value < 0 or (field != "duration" and value == 0):
            raise bad
        return value
    if kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise EmulatorQueryError(f"'{field}' must be true or false, got {value!r}")
        return value
    if kind is Kind.TEXT:
        if not isinstance(value, str):
            raise EmulatorQueryError(f"'{field}' must be a string, got {value!r}")
        return value
    if kind is Kind.DATE:
        if not isinstance(value, str):
            raise EmulatorQueryError(f"'{field}' must be a date YYYY-MM-DD, got {value!r}")
        try:
            if len(value) != 10:
                raise ValueError(value)
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise EmulatorQueryError(f"'{field}' must be a date YYYY-MM-DD, got {value!r}") from None
    if kind is Kind.TIME:
        if not isinstance(value, str) or len(value) not in (5, 8):
            raise EmulatorQueryError(f"'{field}' must be a time HH:MM:SS, got {value!r}")
        try:
            return time.fromisoformat(value).strftime("%H:%M:%S")
        except ValueError:
            raise EmulatorQueryError(f"'{field}' must be a time HH:MM:SS, got {value!r}") from None
    if kind is Kind.OBJECT:
        return _geocode(value)
    raise bad


def _geocode(value: Any) -> dict[str, Any]:
    message = (
        '\'location_geocoded\' must be null or {"lat": number, "lng": number, "address": string}'
    )
    if not isinstance(value, Mapping):
        raise EmulatorQueryError(message)
    lat, lng, address = value.get("lat"), value.get("lng"), value.get("address")
    for coord, bound in ((lat, 90), (lng, 180)):
        if isinstance(coord, bool) or not isinstance(coord, int | float) or not abs(coord) <= bound:
            raise EmulatorQueryError(message)
    if address is not None and not isinstance(address, str):
        raise EmulatorQueryError(message)
    return {"lat": lat, "lng": lng, "address": address}


def validate_activity(body: Any, *, creating: bool) -> dict[str, Any]:
    """The writable fields of an activity body, typed; :class:`EmulatorQueryError` on bad input."""
    if not isinstance(body, Mapping):
        raise EmulatorQueryError("The request body must be a JSON object")
    result: dict[str, Any] = {}
    for key, value in body.items():
        if key in _READ_ONLY:
            continue
        if key == "organization_id":
            result[key] = _check(key, Kind.INT, value)
            if result[key] is None:
                raise EmulatorQueryError("organization_id is required")
            continue
        kind = _WRITABLE_ACTIVITY.get(key)
        if kind is None:
            raise EmulatorQueryError(f"Unknown field '{key}'")
        result[key] = _check(key, kind, value)
    if creating:
        if "organization_id" not in result:
            raise EmulatorQueryError("organization_id is required")
        if not result.get("subject"):
            raise EmulatorQueryError("'subject' is required")
        if not result.get("activity_type"):
            raise EmulatorQueryError("'activity_type' is required")
    elif "subject" in result and not result["subject"]:
        raise EmulatorQueryError("'subject' must not be empty")
    return result


def check_dates(record: Mapping[str, Any]) -> None:
    """Refuse an activity whose end lies before its start."""
    start, end = record.get("start_date"), record.get("end_date")
    if start and end:
        if end < start:
            raise EmulatorQueryError("'end_date' must not be before 'start_date'")
        st, et = record.get("start_time"), record.get("end_time")
        if end == start and st and et and et < st:
            raise EmulatorQueryError("'end_time' must not be before 'start_time' on the same day")
    if (record.get("start_time") or record.get("end_date")) and not start:
        raise EmulatorQueryError("'start_date' is required with 'start_time' or 'end_date'")


def validate_type(body: Any, *, creating: bool) -> dict[str, Any]:
    """The writable fields of an activity type body; :class:`EmulatorQueryError` on bad input."""
    if not isinstance(body, Mapping):
        raise EmulatorQueryError("The request body must be a JSON object")
    result: dict[str, Any] = {}
    for key, value in body.items():
        if key in _READ_ONLY:
            continue
        if key == "organization_id":
            result[key] = _check(key, Kind.INT, value)
        elif key == "name":
            if not isinstance(value, str) or not value.strip():
                raise EmulatorQueryError("'name' must be a non-empty string")
            result[key] = value.strip()
        elif key == "color":
            if value is not None and (not isinstance(value, str) or not _COLOR.match(value)):
                raise EmulatorQueryError(f"'color' must be a hex colour like #4F46E5, got {value!r}")
            result[key] = value
        elif key == "icon_key":
            if value is not None and value not in ICON_KEYS:
                raise EmulatorQueryError(f"Unknown icon_key {value!r}")
            result[key] = value
        else:
            raise EmulatorQueryError(f"Unknown field '{key}'")
    if creating:
        if result.get("organization_id") is None:
            raise EmulatorQueryError("organization_id is required")
        if "name" not in result:
            raise EmulatorQueryError("'name' is required")
    return result


def base_activity(
    record: Mapping[str, Any], select: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """The documented base fields of ``record`` (or only the selected ones)."""
    fields = select if select is not None else ACTIVITY_FIELDS
    out = {f: record.get(f) for f in fields}
    geo = out.get("location_geocoded")
    if isinstance(geo, Mapping):
        out["location_geocoded"] = dict(geo)  # a copy; anything else is served as stored
    return out


def base_type(record: Mapping[str, Any], select: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The documented fields of an activity type record (or only the selected ones)."""
    fields = select if select is not None else TYPE_FIELDS
    return {f: record.get(f) for f in fields}
