"""The mapping options of a target, a feed or an export, from the config: built in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from apexcal.ical.fields import DoneEvents, Privacy, TasksAs
from apexcal.ical.mapping import MappingOptions

if TYPE_CHECKING:
    from apexcal.config.models import Config


def mapping_options(
    config: Config,
    *,
    privacy: Privacy,
    tasks_as: TasksAs,
    done_events: DoneEvents = "keep",
    alarms: bool | Mapping[str, Sequence[str]] = False,
    attendees: bool = False,
) -> MappingOptions:
    """The pure mapping's options: the source's zone and UID domain, ``[mapping]``, and the calendar's choices.

    ``alarms`` is the calendar's setting: ``True`` for ``[mapping.alarms]``,
    ``False`` for none, or a table of its own.  ``attendees`` is the target's
    setting (feeds and exports have none: they are shared files).
    """
    m = config.mapping
    return MappingOptions(
        timezone=config.source.timezone,
        uid_domain=config.source.effective_uid_domain,
        privacy=privacy,
        tasks_as=tasks_as,
        components=dict(m.components),
        summary_template=m.summary,
        activity_url_template=m.activity_url,
        default_duration=m.default_duration,
        max_note_bytes=m.max_note_bytes,
        done_events=done_events,
        alarms=tuple((k, tuple(v)) for k, v in _alarm_table(m.alarms, alarms).items()),
        attendees=attendees,
    )


def _alarm_table(
    default: Mapping[str, Sequence[str]], setting: bool | Mapping[str, Sequence[str]]
) -> Mapping[str, Sequence[str]]:
    if setting is True:
        return default
    if setting is False:
        return {}
    return setting
