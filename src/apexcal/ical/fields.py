"""The vocabulary the config and the mapping share: template placeholders and option values.

One definition shared by the mapping (which fills the placeholders) and the
config (which rejects templates naming anything else), so a template the
config accepts always maps.  ``{assignee}`` is accepted as an alias of
``{assigned_to}`` (the assigned user's full name).
"""

from __future__ import annotations

from typing import Literal

Privacy = Literal["full", "public", "busy"]
"""What a calendar shows: everything, all but the private note, or only busy time."""

TasksAs = Literal["todos", "events"]
"""Whether task types become VTODOs (per ``components``) or everything a VEVENT."""

DoneEvents = Literal["keep", "check", "hide"]
"""How done activities shown as events look: as they are, with a "✓ " before the summary, or left out."""

DONE_MARK = "\u2713 "
"""What ``done_events = "check"`` puts before a done event's summary."""

ComponentKind = Literal["event", "todo"]
"""The component an activity type maps to under ``tasks_as = "todos"``."""

SUMMARY_FIELDS = frozenset({"subject", "type", "deal", "contact", "company", "assigned_to", "assignee"})
"""Placeholders of ``mapping.summary``: the canonical names plus aliases."""

SUMMARY_ALIASES = {"assignee": "assigned_to"}
"""Alias → canonical placeholder name."""

URL_FIELDS = frozenset({"id", "organization_id"})
"""Placeholders of ``mapping.activity_url``."""
