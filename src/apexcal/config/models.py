"""The config file's shape: pydantic models of DESIGN.md §4, one per TOML table.

The tables of what apexcal writes (mapping, targets, feeds) live in
:mod:`apexcal.config.calendars`.  Every model forbids unknown keys (a typo must not pass silently) and is
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
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    model_validator,
)

from apexcal.config.calendars import FeedConfig, MappingConfig, TargetConfig
from apexcal.config.durations import Duration, DurationOrZero, parse_duration
from apexcal.config.table import _env as _env
from apexcal.config.table import _Table as _Table
from apexcal.config.values import (
    FilePath,
    HostName,
    HttpUrl,
    Listen,
    PositiveInt,
    StateUrl,
    ZoneName,
    lower,
)
from apexcal.errors import SecretError


class SourceConfig(_Table):
    """``[source]``: where activities come from and how to read their dates."""

    base_url: HttpUrl = Field(
        default="https://api.achieveapex.com", description="The AchieveApex API (http or https)."
    )
    token: SecretStr | None = Field(
        default=None,
        description="The API token inline (discouraged: the file then holds a secret); "
        "prefer token_file or $APEXCAL_TOKEN.",
    )
    token_file: FilePath | None = Field(
        default=None,
        description="A file holding the API token (recommended).",
        examples=["/run/credentials/apexcal.service/apex-token"],
    )
    organization_id: PositiveInt = Field(
        description="The organization whose activities are synced (required, > 0).",
        examples=[27],
    )
    timezone: ZoneName = Field(
        default="UTC",
        description="IANA time zone in which the API's start/end dates and times are written.",
    )
    page_size: Annotated[int, Field(strict=True, ge=1, le=1000)] = Field(
        default=100,
        description="Activities asked for per request (1–1000); servers cap it at their maximum.",
    )
    uid_domain: HostName | None = Field(
        default=None,
        description="Domain part of every iCalendar UID (apexcal-<org>-<id>@<domain>). "
        "Default: the host of base_url. Never change it once calendars are synced.",
        examples=["api.achieveapex.com"],
    )
    timeout: Duration = Field(
        default=timedelta(seconds=30), description="Timeout of each API request."
    )
    overlap: DurationOrZero = Field(
        default=timedelta(minutes=2),
        description="How far back each incremental pull re-reads before its watermark "
        "(clock skew and records changing while paging); costs nothing when unchanged.",
    )

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

    url: StateUrl = Field(
        default_factory=default_state_url,
        description="The state database (SQLAlchemy URL): sqlite:////absolute/path (four "
        "slashes), sqlite:///relative/path (three), or postgresql+psycopg://user@host:5432/dbname. "
        "Default: sqlite:///$STATE_DIRECTORY/state.db when systemd sets STATE_DIRECTORY, "
        "else ./apexcal-state.db.",
        examples=["sqlite:////var/lib/apexcal/state.db"],
    )


class SyncConfig(_Table):
    """``[sync]``: the schedule and the safety rails of sync cycles."""

    interval: Duration = Field(
        default=timedelta(minutes=5), description="Time between sync cycles of each target and feed."
    )
    reconcile_interval: DurationOrZero = Field(
        default=timedelta(hours=1),
        description='Full id sweep that finds deleted activities; "0s" = on every cycle.',
    )
    caldav_reconcile_interval: DurationOrZero = Field(
        default=timedelta(days=1),
        description="Full href/etag listing of each calendar compared with the records, which "
        "finds deletions a sync token missed; \"0s\" = on every cycle.",
    )
    jitter: DurationOrZero = Field(
        default=timedelta(seconds=10),
        description="Random delay added to each scheduled cycle, so targets do not all fire "
        'at once ("0s": none).',
    )
    concurrency: Annotated[int, Field(strict=True, ge=1, le=32)] = Field(
        default=4, description="CalDAV writes (PUT/DELETE) a target keeps in flight at once (1–32)."
    )
    max_delete_share: Annotated[float, Field(strict=True, ge=0.0, le=1.0)] = Field(
        default=0.5,
        description="Mass-delete guard: a cycle that would delete more than this share (0–1) "
        "of a target's objects stops and asks for --force (an empty API answer must never "
        "wipe a calendar).",
    )
    conflict_policy: Literal["crm-wins", "calendar-wins", "newest-wins"] = Field(
        default="crm-wins",
        description="When both the CRM and the calendar changed the same field since the last cycle "
        "(`done`, or one of a target's writeback_fields), for that field: "
        '"crm-wins" | "calendar-wins" | "newest-wins".',
    )
    recreate_deleted: Annotated[bool, Field(strict=True)] = Field(
        default=True,
        description="Re-create objects deleted on the calendar (true), or leave them deleted (false).",
    )
    shutdown_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="How long a stopping daemon waits for running cycles to finish.",
    )
    backoff_max: Duration = Field(
        default=timedelta(minutes=30),
        description="Longest wait between retries of a target whose cycles keep failing.",
    )


def _at_most_a_minute(value: timedelta) -> timedelta:
    if value > timedelta(minutes=1):
        raise ValueError("must be at most 1m (a revoked feed URL must stop working within a minute)")
    return value


class ServerConfig(_Table):
    """``[server]``: the feed server (feeds, /healthz, /metrics)."""

    listen: Listen = Field(
        default="127.0.0.1:8080",
        description='Address and port to listen on, host:port ("[::1]:8080" for IPv6).',
    )
    public_url: HttpUrl | None = Field(
        default=None,
        description="The public base URL that feed URLs are printed with (behind a reverse proxy).",
        examples=["https://cal.example.com"],
    )
    stale_after: Duration = Field(
        default=timedelta(minutes=15),
        description="/healthz answers 503 when a feed or target has not succeeded for this "
        "long. Default: three times [sync] interval.",
    )
    token_cache: Annotated[Duration, AfterValidator(_at_most_a_minute)] = Field(
        default=timedelta(seconds=30),
        description="How long a feed token looked up in the state store is trusted before "
        "it is looked up again, so a URL revoked by another process (apexcal feed revoke, "
        "another server) stops working within this time (at most 1m); one revoked through "
        "the server's own store stops at once.",
    )
    processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="apexcal serve: server processes sharing the listening port "
        "(SO_REUSEPORT). Each keeps its own caches, so a revoked feed URL stops within "
        "token_cache on every one of them.",
    )

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
        description="host:port of a worker's /metrics; off when unset. "
        "Never [server] listen: workers on one machine need a port each.",
        examples=["127.0.0.1:9101"],
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
    ] = Field(default="info", description='"debug" | "info" | "warning" | "error" | "critical".')
    format: Literal["auto", "json", "console"] = Field(
        default="auto",
        description='"auto" (console on a terminal, JSON lines otherwise) | "json" | "console".',
    )


def _empty_list() -> list[Any]:
    """A new empty list: ``default_factory=list`` would have pydantic read the builtin's
    signature by parsing its text, a few milliseconds of every config check."""
    return []


class Config(_Table):
    """The whole config file.  ``path`` is the file it was read from (``None`` if built in memory)."""

    source: SourceConfig
    state: StateConfig = Field(default_factory=StateConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    mapping: MappingConfig = Field(default_factory=MappingConfig)
    targets: list[TargetConfig] = Field(default_factory=_empty_list)
    feeds: list[FeedConfig] = Field(default_factory=_empty_list)
    server: ServerConfig | None = Field(
        default=None, description="Leave the table out to serve nothing."
    )
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
