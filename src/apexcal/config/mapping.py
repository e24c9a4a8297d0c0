"""The mapping options of a target, a feed or an export, from the config: built in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from apexcal.ical.fields import DoneEvents, Privacy, TasksAs
from apexcal.ical.mapping import MappingOptions

if TYPE_CHECKING:
    from apexcal.config.models import Config


def mapping_options(
    config: Config, *, privacy: Privacy, tasks_as: TasksAs, done_events: DoneEvents = "keep"
) -> MappingOptions:
    """The pure mapping's options: the source's zone and UID domain, ``[mapping]``, and the calendar's choices."""
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
    )
