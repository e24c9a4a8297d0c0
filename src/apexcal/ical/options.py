"""How activities become calendar components for one target or feed: :class:`MappingOptions`, validated and hashable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from apexcal.apex.models import type_key
from apexcal.ical.alarms import DEFAULT_KEY, parse_trigger
from apexcal.ical.fields import (
    SUMMARY_FIELDS,
    URL_FIELDS,
    ComponentKind,
    DoneEvents,
    Privacy,
    TasksAs,
)
from apexcal.ical.summary import parse_template
from apexcal.ical.times import DEFAULT_DURATION
from apexcal.ical.timezones import zone_for


class _FrozenMap(dict[str, ComponentKind]):
    """A read-only, hashable mapping."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def _readonly(self, *args: object, **kwargs: object) -> None:
        raise TypeError("MappingOptions.components is read-only")

    __setitem__ = __delitem__ = _readonly
    update = pop = popitem = clear = setdefault = _readonly  # type: ignore[assignment]


@dataclass(frozen=True, kw_only=True)
class MappingOptions:
    """How activities become calendar components for one target or feed.

    ``summary_template`` may use ``{subject}``, ``{type}``, ``{deal}``,
    ``{contact}``, ``{company}``, ``{assigned_to}`` (alias ``{assignee}``);
    ``activity_url_template``
    ``{id}`` and ``{organization_id}`` (``None``: no link).  Bad templates
    raise :class:`TemplateError` (a ``ValueError``) at construction.
    ``max_note_bytes`` bounds each free-text field (note, public description)
    so an object stays far below server size limits.  ``components`` keys
    may be type names or keys; they are normalised to type keys.  Options are
    hashable.
    """

    timezone: str = "UTC"
    uid_domain: str = "api.achieveapex.com"
    privacy: Privacy = "full"
    tasks_as: TasksAs = "todos"
    components: Mapping[str, ComponentKind] = field(default_factory=lambda: {"task": "todo"})
    summary_template: str = "{subject}"
    activity_url_template: str | None = "https://app.achieveapex.com/activities/{id}"
    default_duration: timedelta = DEFAULT_DURATION
    max_note_bytes: int = 65536
    done_events: DoneEvents = "keep"
    alarms: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """apexcal's reminders: (type key or ``default``, triggers) pairs (:mod:`apexcal.ical.alarms`)."""
    attendees: bool = False
    """The assigned user as ORGANIZER and ATTENDEE, the contact as ATTENDEE (``full`` privacy only)."""

    def __post_init__(self) -> None:
        # Keys normalised to type keys ("Customer Training" → customer_training) and
        # frozen, so options stay hashable and usable as cache keys.
        object.__setattr__(
            self, "components", _FrozenMap({type_key(k): v for k, v in self.components.items()})
        )
        parse_template(self.summary_template, SUMMARY_FIELDS)
        if self.activity_url_template is not None:
            parse_template(self.activity_url_template, URL_FIELDS)
        zone_for(self.timezone)
        if self.default_duration <= timedelta(0):
            raise ValueError("default_duration must be positive")
        if self.max_note_bytes < 64:
            raise ValueError("max_note_bytes must be at least 64")
        # Canonical and sorted, so equal tables make equal (and equally hashed) options.
        object.__setattr__(
            self,
            "alarms",
            tuple(
                sorted(
                    (
                        key if key == DEFAULT_KEY else type_key(key),
                        tuple(dict.fromkeys(parse_trigger(t).key for t in triggers)),
                    )
                    for key, triggers in self.alarms
                )
            ),
        )
