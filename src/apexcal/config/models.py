"""The config file's shape: pydantic models of DESIGN.md §4, one per TOML table.

Every model forbids unknown keys (a typo must not pass silently) and is
frozen: the config is read once at the boundary and trusted inside.  Values
are checked here one by one; checks across entries (unique names, unique
feed paths) live in :mod:`apexcal.config.loader`, which knows the key paths.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetPydanticSchema,
    PlainValidator,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    model_validator,
    with_config,
)
from typing_extensions import TypedDict

from apexcal.apex.models import type_key
from apexcal.config.durations import Duration, DurationOrZero, parse_duration
from apexcal.errors import SecretError

NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
"""Target and feed names: they appear in URLs and file names."""

CREDENTIAL_TOKEN = "apex-token"  # noqa: S105  (a file name, not a secret)
"""File name of the API token under ``$CREDENTIALS_DIRECTORY``."""


def credential_password(target_name: str) -> str:
    """File name of a target's CalDAV password under ``$CREDENTIALS_DIRECTORY``."""
    return f"{target_name}-dav"


SUMMARY_PLACEHOLDERS = frozenset({"subject", "type", "deal", "contact", "company", "assigned_to"})
ACTIVITY_URL_PLACEHOLDERS = frozenset({"id", "organization_id"})


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


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


NonEmptyStr = Annotated[str, Field(min_length=1)]
Name = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_name)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
ZoneName = Annotated[str, AfterValidator(_zone)]
Color = Annotated[str, AfterValidator(_color)]
TypeKey = Annotated[str, AfterValidator(_type_key)]
FilePath = Annotated[Path, BeforeValidator(_file_path)]
PositiveInt = Annotated[int, Field(strict=True, gt=0)]
Privacy = Literal["full", "public", "busy"]
TasksAs = Literal["todos", "events"]


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


# --- tables -------------------------------------------------------------------


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _env(info: ValidationInfo) -> Mapping[str, str]:
    context = info.context
    if isinstance(context, Mapping) and isinstance(context.get("env"), Mapping):
        env: Mapping[str, str] = context["env"]
        return env
    return os.environ


class SourceConfig(_Table):
    """``[source]``: where activities come from and how to read their dates."""

    base_url: HttpUrl = "https://api.achieveapex.com"
    token: SecretStr | None = None
    token_file: FilePath | None = None
    organization_id: PositiveInt
    timezone: ZoneName = "UTC"
    page_size: Annotated[int, Field(strict=True, ge=1, le=1000)] = 100
    uid_domain: Annotated[str, AfterValidator(_hostname)] | None = None
    timeout: Duration = timedelta(seconds=30)
    overlap: DurationOrZero = timedelta(minutes=2)

    @model_validator(mode="after")
    def _one_token_source(self) -> SourceConfig:
        if self.token is not None and self.token_file is not None:
            raise ValueError("set only one of token and token_file")
        return self

    def require_token(self) -> str:
        """The API token; ``SecretError`` if secrets were not resolved or none is set."""
        if self.token is None:
            raise SecretError("source.token", "no API token (secrets not resolved)")
        return self.token.get_secret_value()

    @property
    def effective_uid_domain(self) -> str:
        """The domain part of every UID: ``uid_domain``, else the host of ``base_url``."""
        return self.uid_domain or urlsplit(self.base_url).hostname or "localhost"


def default_state_url(env: Mapping[str, str] | None = None) -> str:
    """``sqlite:///`` + ``$STATE_DIRECTORY/state.db`` when systemd sets it, else ``./apexcal-state.db``."""
    env = os.environ if env is None else env
    state_dir = env.get("STATE_DIRECTORY", "").split(":")[0]
    path = Path(state_dir, "state.db") if state_dir else Path("apexcal-state.db")
    return f"sqlite:///{path.absolute()}"


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


class StateConfig(_Table):
    """``[state]``: the database holding the mirror and per-target records."""

    url: Annotated[str, AfterValidator(_state_url)] = Field(default_factory=default_state_url)


class SyncConfig(_Table):
    """``[sync]``: the schedule and the safety rails of sync cycles."""

    interval: Duration = timedelta(minutes=5)
    reconcile_interval: DurationOrZero = timedelta(hours=1)
    jitter: DurationOrZero = timedelta(seconds=10)
    concurrency: Annotated[int, Field(strict=True, ge=1, le=32)] = 4
    max_delete_share: Annotated[float, Field(strict=True, ge=0.0, le=1.0)] = 0.5
    conflict_policy: Literal["crm-wins", "calendar-wins", "newest-wins"] = "crm-wins"
    recreate_deleted: Annotated[bool, Field(strict=True)] = True
    shutdown_timeout: Duration = timedelta(seconds=30)
    backoff_max: Duration = timedelta(minutes=30)


Component = Literal["event", "todo"]


def _default_components() -> dict[str, Component]:
    return {"task": "todo"}


class MappingConfig(_Table):
    """``[mapping]``: how an activity becomes an iCalendar component."""

    summary: Annotated[NonEmptyStr, _template(SUMMARY_PLACEHOLDERS)] = "{subject}"
    activity_url: Annotated[
        NonEmptyStr, _template(ACTIVITY_URL_PLACEHOLDERS), AfterValidator(_activity_url)
    ] = "https://app.achieveapex.com/activities/{id}"
    default_duration: Duration = timedelta(minutes=30)
    components: dict[TypeKey, Component] = Field(default_factory=_default_components)
    max_note_bytes: Annotated[int, Field(strict=True, ge=256, le=4 * 1024 * 1024)] = 64 * 1024
    geocoder: Literal["offline", "nominatim", "none"] = "offline"


class TargetConfig(_Table):
    """``[[targets]]``: one CalDAV calendar collection kept in sync."""

    name: Name
    url: HttpUrl
    username: NonEmptyStr | None = None
    password: SecretStr | None = None
    password_file: FilePath | None = None
    privacy: Privacy = "full"
    tasks_as: TasksAs = "todos"
    writeback: Annotated[bool, Field(strict=True)] = True
    create: Annotated[bool, Field(strict=True)] = False
    filter: FilterDict = Field(default_factory=dict)
    interval: Duration | None = None

    @model_validator(mode="after")
    def _password_source(self, info: ValidationInfo) -> TargetConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set only one of password and password_file")
        if (
            self.username is not None
            and self.password is None
            and self.password_file is None
            and not _env(info).get("CREDENTIALS_DIRECTORY")
        ):
            raise ValueError(
                "username is set but there is no password: set password_file (or password), "
                f"or provide $CREDENTIALS_DIRECTORY/{credential_password(self.name)}"
            )
        return self


class WindowConfig(_Table):
    """A feed's window: activities overlapping [today − past_days, today + future_days]."""

    past_days: Annotated[int, Field(strict=True, ge=0, le=3660)] = 30
    future_days: Annotated[int, Field(strict=True, ge=0, le=3660)] = 365


class FeedConfig(_Table):
    """``[[feeds]]``: one .ics file written after each cycle and served by the feed server."""

    name: Name
    path: FilePath
    filter: FilterDict = Field(default_factory=dict)
    privacy: Privacy = "public"
    tasks_as: TasksAs = "events"
    window: WindowConfig = Field(default_factory=WindowConfig)
    calendar_name: NonEmptyStr | None = None
    description: str | None = None
    color: Color | None = None
    refresh_interval: Duration = timedelta(hours=1)
    per_user: Annotated[bool, Field(strict=True)] = False
    interval: Duration | None = None

    @model_validator(mode="before")
    @classmethod
    def _calendar_name_defaults_to_name(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "calendar_name" not in data and "name" in data:
            return {**data, "calendar_name": data["name"]}
        return data


def _listen(value: str) -> str:
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})", value)
    if not match or int(match.group(2)) > 65535:
        raise ValueError(f"{value!r} is not host:port (e.g. '127.0.0.1:8080' or '[::1]:8080')")
    return value


class ServerConfig(_Table):
    """``[server]``: the feed server (feeds, /healthz, /metrics)."""

    listen: Annotated[str, AfterValidator(_listen)] = "127.0.0.1:8080"
    public_url: HttpUrl | None = None
    stale_after: Duration = timedelta(minutes=15)

    @property
    def host(self) -> str:
        """The address to bind, without IPv6 brackets."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The port to bind (0: any free port)."""
        return int(self.listen.rpartition(":")[2])


class LogConfig(_Table):
    """``[log]``: how much to log and in which form."""

    level: Annotated[
        Literal["debug", "info", "warning", "error", "critical"], BeforeValidator(_lower)
    ] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Config(_Table):
    """The whole config file.  ``path`` is the file it was read from (``None`` if built in memory)."""

    source: SourceConfig
    state: StateConfig = Field(default_factory=StateConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    mapping: MappingConfig = Field(default_factory=MappingConfig)
    targets: list[TargetConfig] = Field(default_factory=list)
    feeds: list[FeedConfig] = Field(default_factory=list)
    server: ServerConfig | None = None
    log: LogConfig = Field(default_factory=LogConfig)

    _path: Path | None = PrivateAttr(default=None)

    @property
    def path(self) -> Path | None:
        """The file this config was read from, or ``None``."""
        return self._path

    @model_validator(mode="before")
    @classmethod
    def _derived_defaults(cls, data: Any, info: ValidationInfo) -> Any:
        """Fill defaults that depend on other keys or on the environment."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        state = data.get("state", {})
        if isinstance(state, Mapping) and "url" not in state:
            data["state"] = {**state, "url": default_state_url(_env(info))}
        server = data.get("server")
        if isinstance(server, Mapping) and "stale_after" not in server:
            sync = data.get("sync", {})
            raw = sync.get("interval", timedelta(minutes=5)) if isinstance(sync, Mapping) else None
            try:
                interval = parse_duration(raw)
            except ValueError:
                interval = timedelta(minutes=5)  # the bad interval is reported on its own
            if interval > timedelta(0):
                data["server"] = {**server, "stale_after": 3 * interval}
        return data

    def target(self, name: str) -> TargetConfig:
        """The target called ``name``; ``KeyError`` if there is none."""
        for target in self.targets:
            if target.name == name:
                return target
        raise KeyError(name)

    def feed(self, name: str) -> FeedConfig:
        """The feed called ``name``; ``KeyError`` if there is none."""
        for feed in self.feeds:
            if feed.name == name:
                return feed
        raise KeyError(name)
