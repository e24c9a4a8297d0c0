"""Single config values: names, URLs, zones, colours, templates, filters and their checks.

Each type here is an ``Annotated`` alias whose validator raises ``ValueError``
with an operator-readable message; :mod:`apexcal.config.loader` turns those
into problems with key paths.  None of them echo secrets.
"""

from __future__ import annotations

import re
import string
from datetime import date
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    GetPydanticSchema,
    PlainValidator,
    with_config,
)
from typing_extensions import TypedDict

from apexcal.apex.keys import type_key
from apexcal.ical.fields import SUMMARY_FIELDS, URL_FIELDS

NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
"""Target and feed names: they appear in URLs and file names."""

CREDENTIAL_TOKEN = "apex-token"  # noqa: S105  (a file name, not a secret)
"""File name of the API token under ``$CREDENTIALS_DIRECTORY``."""


def credential_password(target_name: str) -> str:
    """File name of a target's CalDAV password under ``$CREDENTIALS_DIRECTORY``."""
    return f"{target_name}-dav"


SUMMARY_PLACEHOLDERS = SUMMARY_FIELDS
"""Placeholders a summary template may use (shared with the mapping)."""
ACTIVITY_URL_PLACEHOLDERS = URL_FIELDS
"""Placeholders an activity URL template may use (shared with the mapping)."""


# --- single values ------------------------------------------------------------


def _name(value: str) -> str:
    if not NAME_PATTERN.fullmatch(value) or set(value) == {"."}:
        raise ValueError(
            f"{value!r} is not a valid name: use letters, digits, '.', '_' and '-' only"
        )
    return value


def _http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme and parts.scheme not in ("http", "https"):
        raise ValueError(f"not a valid URL: scheme must be http or https, not {parts.scheme!r}")
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in value)
    ):
        raise ValueError("not a valid URL")
    if parts.password is not None:
        raise ValueError("must not contain a password: use the *_file keys for secrets")
    return value


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not a known IANA time zone (e.g. 'Europe/Berlin')"
        ) from None
    return value


def _color(value: str) -> str:
    if not re.fullmatch(r"#[0-9A-Fa-f]{6}", value):
        raise ValueError(f"{value!r} is not a colour of the form '#RRGGBB'")
    return value


def _hostname(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?", value):
        raise ValueError(f"{value!r} is not a valid domain name")
    return value


def template_fields(template: str) -> set[str]:
    """The placeholder names used in a ``str.format`` template; ``ValueError`` if malformed."""
    fields: set[str] = set()
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if not field or not field.isidentifier():
            raise ValueError(f"placeholder {{{field}}} is not a plain name")
        if spec or conversion:
            raise ValueError(f"placeholder {{{field}}} must not carry a format or conversion")
        fields.add(field)
    return fields


def _template(allowed: frozenset[str]) -> AfterValidator:
    def check(value: str) -> str:
        try:
            used = template_fields(value)
        except ValueError as exc:
            raise ValueError(f"not a valid template: {exc}") from None
        unknown = sorted(used - allowed)
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{unknown[0]}}}; allowed: "
                + ", ".join(f"{{{name}}}" for name in sorted(allowed))
            )
        return value

    return AfterValidator(check)


def _activity_url(value: str) -> str:
    _http_url(value.format(id=1, organization_id=1))
    return value


def _type_key(value: str) -> str:
    if not value or value != type_key(value):
        raise ValueError(
            f"{value!r} is not an activity type key (lowercase, e.g. 'call' or 'customer_training')"
        )
    return value


def _type_keys(value: object) -> str | list[str]:
    if isinstance(value, str):
        return _type_key(value)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return [_type_key(v) for v in value]
    raise ValueError("must be an activity type key or a non-empty list of them")


def _filter_date(value: object) -> str:
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value).isoformat() if len(value) == 10 else _bad_date()
        except ValueError:
            pass
    return _bad_date()


def _bad_date() -> str:
    raise ValueError("must be a date (YYYY-MM-DD)")


def _file_path(value: object) -> object:
    if isinstance(value, str) and (not value.strip() or value.endswith(("/", "\\"))):
        raise ValueError("must be the path of a file")
    return value


def lower(value: object) -> object:
    """``value`` lowercased when it is text (case-insensitive choices)."""
    return value.lower() if isinstance(value, str) else value


NonEmptyStr = Annotated[str, Field(min_length=1)]
Name = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_name)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
ZoneName = Annotated[str, AfterValidator(_zone)]
Color = Annotated[str, AfterValidator(_color)]
TypeKey = Annotated[str, AfterValidator(_type_key)]
HostName = Annotated[str, AfterValidator(_hostname)]
SummaryTemplate = Annotated[NonEmptyStr, _template(SUMMARY_PLACEHOLDERS)]
ActivityUrlTemplate = Annotated[
    NonEmptyStr, _template(ACTIVITY_URL_PLACEHOLDERS), AfterValidator(_activity_url)
]
FilePath = Annotated[Path, BeforeValidator(_file_path)]
PositiveInt = Annotated[int, Field(strict=True, gt=0)]


# --- filters ------------------------------------------------------------------

FilterDate = Annotated[str, PlainValidator(_filter_date)]

DateRange = TypedDict(
    "DateRange",
    {"$gte": FilterDate, "$lte": FilterDate, "$gt": FilterDate, "$lt": FilterDate},
    total=False,
)
DateRange.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]


@with_config(ConfigDict(extra="forbid"))
class ActivityFilter(TypedDict, total=False):
    """The API's documented query parameters for activities, as a ``[*.filter]`` table."""

    assigned_to_user_id: PositiveInt
    created_by_user_id: PositiveInt
    deal_id: PositiveInt
    contact_id: PositiveInt
    company_id: PositiveInt
    activity_type: Annotated[str | list[str], PlainValidator(_type_keys)]
    done: Annotated[bool, Field(strict=True)]
    start_date: DateRange
    subject: NonEmptyStr


FILTER_KEYS = tuple(ActivityFilter.__annotations__)

FilterDict = Annotated[
    dict[str, Any],
    GetPydanticSchema(lambda _source, handler: handler.generate_schema(ActivityFilter)),
]
"""A plain dict at run time, validated as :class:`ActivityFilter` (key paths included)."""


def _state_url(value: str) -> str:
    match = re.fullmatch(r"(sqlite|postgresql)(\+[A-Za-z0-9_]+)?://(.*)", value, re.DOTALL)
    if not match:
        raise ValueError(
            "not a database URL: expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
        )
    rest = match.group(3)
    if match.group(1) == "sqlite" and rest and not rest.startswith("/"):
        raise ValueError(
            "a sqlite URL has three slashes before a relative path, four before an absolute one"
        )
    if match.group(1) == "postgresql" and not rest.strip("/"):
        raise ValueError("a postgresql URL needs a host or database name")
    return value


StateUrl = Annotated[str, AfterValidator(_state_url)]


def _listen(value: str) -> str:
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})", value)
    if not match or int(match.group(2)) > 65535:
        raise ValueError(f"{value!r} is not host:port (e.g. '127.0.0.1:8080' or '[::1]:8080')")
    return value


Listen = Annotated[str, AfterValidator(_listen)]
