"""The config file's shape: pydantic models of DESIGN.md §4, one per TOML table.

Every model forbids unknown keys (a typo must not pass silently) and is
frozen: the config is read once at the boundary and trusted inside.  Single
values are checked by the types of :mod:`apexcal.config.values`; checks across
entries (unique names, unique feed paths) live in :mod:`apexcal.config.loader`,
which knows the key paths.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    model_validator,
)

from apexcal.config.durations import Duration, DurationOrZero, parse_duration
from apexcal.config.values import (
    ActivityUrlTemplate,
    Color,
    FilePath,
    FilterDict,
    HostName,
    HttpUrl,
    Listen,
    Name,
    NonEmptyStr,
    PositiveInt,
    StateUrl,
    SummaryTemplate,
    TypeKey,
    ZoneName,
    credential_password,
    lower,
)
from apexcal.errors import SecretError
from apexcal.ical.fields import Privacy, TasksAs

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
    uid_domain: HostName | None = None
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


class StateConfig(_Table):
    """``[state]``: the database holding the mirror and per-target records."""

    url: StateUrl = Field(default_factory=default_state_url)


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

    summary: SummaryTemplate = "{subject}"
    activity_url: ActivityUrlTemplate = "https://app.achieveapex.com/activities/{id}"
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


class ServerConfig(_Table):
    """``[server]``: the feed server (feeds, /healthz, /metrics)."""

    listen: Listen = "127.0.0.1:8080"
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


def _tick(value: timedelta) -> timedelta:
    seconds = value.total_seconds()
    if seconds != int(seconds) or not (
        (seconds < 60 and 60 % seconds == 0)
        or (seconds % 60 == 0 and seconds <= 3600 and 3600 % seconds == 0)
    ):
        raise ValueError(
            "must divide a minute or an hour evenly (e.g. \"10s\", \"30s\", \"1m\", \"5m\")"
        )
    return value


class WorkerConfig(_Table):
    """``[worker]``: the processes of ``apexcal worker`` (procrastinate on PostgreSQL)."""

    tick: Annotated[Duration, AfterValidator(_tick)] = Field(
        default=timedelta(seconds=30),
        description="How often the schedule is checked for due targets and feeds "
        "(deferred once however many workers run); divides a minute or an hour.",
    )
    concurrency: Annotated[int, Field(strict=True, ge=1, le=64)] = Field(
        default=4, description="Jobs one worker process runs at once."
    )
    max_job_duration: Duration = Field(
        default=timedelta(minutes=30),
        description="A job running longer is asked to stop; at twice this it is "
        "finished as failed by the reaper and the next tick runs it again.",
    )
    heartbeat: Duration = Field(
        default=timedelta(seconds=10),
        description="How often a worker tells PostgreSQL it is alive.",
    )
    stalled_after: Duration = Field(
        default=timedelta(seconds=30),
        description="A worker silent for this long is dead: the reaper finishes its "
        "jobs as failed. Keep it at least three heartbeats.",
    )
    reaper_interval: Annotated[Duration, AfterValidator(_tick)] = Field(
        default=timedelta(minutes=1),
        description="How often the reaper looks for jobs of dead workers and jobs "
        "past max_job_duration; divides a minute or an hour.",
    )
    metrics_listen: Listen | None = Field(
        default=None,
        description="host:port of a worker's /metrics and /healthz; off when unset. "
        "Never [server] listen: workers on one machine need a port each.",
    )

    @model_validator(mode="after")
    def _heartbeat_below_stall(self) -> WorkerConfig:
        if self.stalled_after < 2 * self.heartbeat:
            raise ValueError("stalled_after must be at least twice heartbeat")
        return self


class LogConfig(_Table):
    """``[log]``: how much to log and in which form."""

    level: Annotated[
        Literal["debug", "info", "warning", "error", "critical"], BeforeValidator(lower)
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
    worker: WorkerConfig = Field(default_factory=WorkerConfig)

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
