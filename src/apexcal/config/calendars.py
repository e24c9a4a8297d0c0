"""The config tables of what apexcal writes: CalDAV targets, .ics feeds, and how activities map.

``[mapping]`` (how an activity becomes a component), ``[[targets]]`` (CalDAV
calendars kept in sync) and ``[[feeds]]`` (.ics files and their window).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainValidator,
    SecretStr,
    ValidationInfo,
    model_validator,
)

from apexcal.apex.keys import type_key
from apexcal.config.durations import Duration
from apexcal.config.table import _env, _Table
from apexcal.config.values import (
    ActivityUrlTemplate,
    Color,
    FilePath,
    FilterDict,
    HttpUrl,
    Name,
    NonEmptyStr,
    SummaryTemplate,
    TypeKey,
    credential_password,
)
from apexcal.ical.alarms import DEFAULT_KEY, parse_trigger
from apexcal.ical.editable import WRITEBACK_FIELDS
from apexcal.ical.fields import DoneEvents, Privacy, TasksAs

Component = Literal["event", "todo"]


def _alarm_key(value: str) -> str:
    if value != DEFAULT_KEY and (not value or value != type_key(value)):
        raise ValueError(f"{value!r} is neither {DEFAULT_KEY!r} nor an activity type key (lowercase, e.g. 'call')")
    return value


def _triggers(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError('must be a list of reminders, e.g. ["-15m", "-1d", "09:00"]')
    if len(value) > 8:
        raise ValueError("at most 8 reminders per type")
    return [parse_trigger(v).key for v in value]  # TriggerError (a ValueError) names the text


def _alarms_setting(value: object) -> bool | dict[str, list[str]]:
    if isinstance(value, bool):
        return value
    if not isinstance(value, Mapping):
        raise ValueError("must be true, false or a table of reminders (type key → list)")
    table: dict[str, list[str]] = {}
    for key, triggers in value.items():
        try:
            table[_alarm_key(str(key))] = _triggers(triggers)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return table


def _writeback_fields(value: object) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"must be a list of field names, e.g. {list(WRITEBACK_FIELDS)}")
    unknown = [v for v in value if v not in WRITEBACK_FIELDS]
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; known: {list(WRITEBACK_FIELDS)}")
    return [f for f in WRITEBACK_FIELDS if f in value]


WritebackFields = Annotated[list[str], PlainValidator(_writeback_fields)]
"""A target's ``writeback_fields``: which calendar-side edits go back to the CRM (in canonical order)."""

AlarmTable = dict[Annotated[str, AfterValidator(_alarm_key)], Annotated[list[str], BeforeValidator(_triggers)]]
"""``[mapping.alarms]``: activity type key (or ``default``) → reminders."""
Alarms = Annotated[bool | dict[str, list[str]], PlainValidator(_alarms_setting)]
"""A target's or feed's ``alarms``: ``true`` ([mapping.alarms]), ``false`` (none) or its own table."""

_ALARMS_HELP = (
    "A table of its own replaces [mapping.alarms] here (same keys); true uses [mapping.alarms], "
    "false writes no reminders."
)


# Help text of the options targets and feeds share (each declares its own default).
_NAME_HELP = 'Unique among targets and feeds; letters, digits, ".", "_" and "-" only '
_DONE_EVENTS_HELP = (
    'Done activities shown as events: "keep" (as they are), "check" (a "✓ " '
    'before the summary) or "hide" (left out; done tasks stay).'
)


def _default_components() -> dict[str, Component]:
    return {"task": "todo"}


class MappingConfig(_Table):
    """``[mapping]``: how an activity becomes an iCalendar component."""

    summary: SummaryTemplate = Field(
        default="{subject}",
        description="SUMMARY of each event or to-do; placeholders: {subject} {type} {deal} "
        "{contact} {company} {assigned_to} ({assignee} is an alias). Separators next to an "
        'empty placeholder are dropped: "{subject} — {deal}" without a deal is just the subject.',
    )
    activity_url: ActivityUrlTemplate = Field(
        default="https://app.achieveapex.com/activities/{id}",
        description="URL back to the activity; placeholders: {id} {organization_id}.",
    )
    default_duration: Duration = Field(
        default=timedelta(minutes=30),
        description="Length of a timed activity that has neither an end nor a duration.",
    )
    components: dict[TypeKey, Component] = Field(
        default_factory=_default_components,
        description='Activity type key → "event" | "todo". A type mapped to "todo" becomes a '
        'VTODO only where tasks_as = "todos"; unlisted types are events. Setting this table '
        'replaces the default, which is { task = "todo" }.',
    )
    max_note_bytes: Annotated[int, Field(strict=True, ge=256, le=4 * 1024 * 1024)] = Field(
        default=64 * 1024,
        description="Maximum size of a note in bytes (256 B – 4 MiB); longer notes are "
        "truncated with a marker, so objects stay well under CalDAV servers' size limits.",
    )
    geocoder: Literal["offline", "nominatim", "none"] = Field(
        default="offline",
        description="Where coordinates for a location come from when the API has none: "
        '"offline" (bundled city list) | "nominatim" (OpenStreetMap, online) | "none". '
        "A point found this way adds GEO and a map, never changes LOCATION.",
    )
    alarms: AlarmTable = Field(
        default_factory=dict,
        description="Reminders apexcal writes: activity type key (or default, for every type "
        'not listed) → list of triggers: an offset before ("-15m", "-1h30m", "-2d", or RFC 5545 '
        '"-PT15M") or after ("+10m") the start (a to-do\'s due time), or a time on the due day '
        '("09:00", in the source time zone). Done activities get none. apexcal updates and '
        "removes only its own reminders, never one a user added.",
        examples=[{"default": ["-15m"], "call": ["-5m"], "task": ["09:00"]}],
    )


class TargetConfig(_Table):
    """``[[targets]]``: one CalDAV calendar collection kept in sync."""

    name: Name = Field(
        description=_NAME_HELP + "(used in URLs, file names and `apexcal sync --target NAME`).",
        examples=["jane"],
    )
    url: HttpUrl = Field(
        description="The calendar collection URL (http or https).",
        examples=["https://dav.example.com/calendars/jane/crm/"],
    )
    username: NonEmptyStr | None = Field(
        default=None,
        description="CalDAV user name; when set, a password is needed.",
        examples=["jane"],
    )
    password: SecretStr | None = Field(
        default=None,
        description="The CalDAV password inline (discouraged); prefer password_file or "
        "$CREDENTIALS_DIRECTORY/<name>-dav.",
    )
    password_file: FilePath | None = Field(
        default=None,
        description="A file holding the CalDAV password.",
        examples=["/run/credentials/apexcal.service/jane-dav"],
    )
    privacy: Privacy = Field(
        default="full",
        description='What the calendar shows: "full" (everything), "public" (never the '
        'private note), "busy" (only "Busy" blocks).',
    )
    tasks_as: TasksAs = Field(
        default="todos",
        description='Tasks as "todos" (VTODO, completion syncs back) or "events".',
    )
    done_events: DoneEvents = Field(default="keep", description=_DONE_EVENTS_HELP)
    writeback: Annotated[bool, Field(strict=True)] = Field(
        default=True, description="Send completions made in the calendar back to the CRM."
    )
    writeback_fields: WritebackFields = Field(
        default_factory=lambda: ["done"],
        description='What a change made in the calendar sends back to the CRM (with writeback = true): '
        '"done" (completion), "start" and "end" (moving or resizing; times converted to '
        '[source] timezone, all-day and timed both ways), "subject" (a rename), "location". '
        "A field changed on both sides since the last cycle is settled by [sync] conflict_policy; "
        "fields changed on different sides are both kept. "
        'Anything beyond "done" needs privacy = "full" (other privacies do not show the true values).',
        examples=[["done", "start", "end", "subject", "location"]],
    )
    create: Annotated[bool, Field(strict=True)] = Field(
        default=False, description="Create the collection (MKCALENDAR) when it does not exist."
    )
    filter: FilterDict = Field(
        default_factory=dict,
        description="Which activities go to this target; keys are the API's documented query "
        "parameters: assigned_to_user_id, created_by_user_id, deal_id, contact_id, company_id "
        '(integers); activity_type (a type key or a list of them); done (true/false); '
        'start_date (a table of "$gte"/"$lte"/"$gt"/"$lt" dates); subject (partial match).',
        examples=[{"assigned_to_user_id": 46, "activity_type": ["call", "meeting", "task"]}],
    )
    interval: Duration | None = Field(
        default=None, description="Overrides [sync] interval for this target.", examples=["1m"]
    )
    alarms: Alarms = Field(
        default=True, description="Reminders on this target (default: [mapping.alarms]). " + _ALARMS_HELP
    )
    attendees: Annotated[bool, Field(strict=True)] = Field(
        default=False,
        description="The activity's assigned user as ORGANIZER and ATTENDEE, its contact as "
        "ATTENDEE (name and email from the CRM), all with SCHEDULE-AGENT=CLIENT so no server "
        'sends invitations; only with privacy = "full" (elsewhere it would show whom a meeting is with).',
    )

    @model_validator(mode="after")
    def _attendees_need_full_privacy(self) -> TargetConfig:
        if self.attendees and self.privacy != "full":
            raise ValueError(
                f'attendees = true needs privacy = "full" (this target has privacy = "{self.privacy}", '
                "which hides whom an activity is with)"
            )
        return self

    @model_validator(mode="after")
    def _field_writeback_needs_full_privacy(self) -> TargetConfig:
        edits = [f for f in self.writeback_fields if f != "done"]
        if edits and self.privacy != "full":
            shown = ", ".join(f'"{f}"' for f in edits)
            raise ValueError(
                f'writeback_fields {shown} needs privacy = "full" (target "{self.name}" has '
                f'privacy = "{self.privacy}", whose calendar does not show the true values; '
                'keep writeback_fields = ["done"] there)'
            )
        return self

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

    past_days: Annotated[int, Field(strict=True, ge=0, le=3660)] = Field(
        default=30, description="Days before today an activity may end and still be in the feed."
    )
    future_days: Annotated[int, Field(strict=True, ge=0, le=3660)] = Field(
        default=365, description="Days after today an activity may start and still be in the feed."
    )


class FeedConfig(_Table):
    """``[[feeds]]``: one .ics file written after each cycle and served by the feed server."""

    name: Name = Field(
        description=_NAME_HELP + "(the feed's URL is /feeds/<token>/<name>.ics).",
        examples=["team"],
    )
    path: FilePath = Field(
        description="Where the file is written (atomically).",
        examples=["/var/lib/apexcal/feeds/team.ics"],
    )
    filter: FilterDict = Field(
        default_factory=dict,
        description="Which activities go into this feed; same keys as [targets.filter].",
        examples=[{"activity_type": ["call", "meeting", "task"]}],
    )
    privacy: Privacy = Field(
        default="public",
        description='"full" | "public" | "busy", as for targets; feeds are often shared: "public".',
    )
    tasks_as: TasksAs = Field(
        default="events",
        description='"events" (most subscribing clients ignore to-dos) or "todos".',
    )
    done_events: DoneEvents = Field(default="keep", description=_DONE_EVENTS_HELP)
    window: WindowConfig = Field(
        default_factory=WindowConfig,
        description="Activities overlapping [today − past_days, today + future_days].",
    )
    calendar_name: NonEmptyStr | None = Field(
        default=None,
        description="Calendar name shown by clients (default: the feed's name).",
        examples=["Team activities"],
    )
    description: str | None = Field(
        default=None,
        description="Calendar description shown by clients.",
        examples=["Calls, meetings and tasks of the sales team"],
    )
    color: Color | None = Field(
        default=None, description='Calendar colour, "#RRGGBB".', examples=["#3B82F6"]
    )
    refresh_interval: Duration = Field(
        default=timedelta(hours=1),
        description="How often subscribing clients should refresh (REFRESH-INTERVAL).",
    )
    per_user: Annotated[bool, Field(strict=True)] = Field(
        default=False, description="Also write one feed per assigned user, named <name>-<user id>."
    )
    interval: Duration | None = Field(
        default=None, description="Overrides [sync] interval for this feed.", examples=["15m"]
    )
    alarms: Alarms = Field(
        default=False,
        description="Reminders in this feed: off by default, as subscribing clients handle them "
        "badly. " + _ALARMS_HELP,
    )

    @model_validator(mode="before")
    @classmethod
    def _calendar_name_defaults_to_name(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "calendar_name" not in data and "name" in data:
            return {**data, "calendar_name": data["name"]}
        return data
