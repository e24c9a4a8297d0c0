"""Summary and URL templates: ``{field}`` placeholders filled with cleaned one-line values.

Templates name only the placeholders of :mod:`apexcal.ical.fields` (the
config rejects others, and :class:`TemplateError` says which).  In a
summary, the separators (``— – - | : ·``) and whitespace an empty field
leaves behind are trimmed at the ends and collapsed in the middle (see
:func:`render_summary`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from functools import cache

from apexcal.apex.models import Activity
from apexcal.errors import TemplateError
from apexcal.ical.fields import SUMMARY_ALIASES, SUMMARY_FIELDS
from apexcal.ical.text import short_line


@cache
def parse_template(template: str, allowed: frozenset[str]) -> tuple[tuple[str, str | None], ...]:
    """Literal text and field names of a ``{field}`` template; only plain names are allowed."""
    try:
        parts = tuple(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(template, str(exc)) from None
    pieces: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parts:
        if name is not None and (name not in allowed or spec or conversion):
            raise TemplateError(template, f"unknown field {{{name}}}; known: {sorted(allowed)}")
        pieces.append((literal, name))
    return tuple(pieces)


def render_template(template: str, allowed: frozenset[str], values: Mapping[str, str]) -> str:
    return "".join(
        literal + (values.get(name, "") if name is not None else "")
        for literal, name in parse_template(template, allowed)
    )


_EMPTY = "\x00"  # stands for an empty field while tidying; clean_line would drop it anyway
_SEPARATORS = "—–\\-|:·"
_EMPTY_BRACKETS = re.compile(r"[(\[]\s*\x00\s*[)\]]")
_GAP = re.compile(rf"[\s{_SEPARATORS}\x00]*\x00[\s{_SEPARATORS}\x00]*")
_FIRST_SEPARATOR = re.compile(rf"(\s*)([{_SEPARATORS}])")


def render_summary(template: str, values: Mapping[str, str]) -> str:
    """The summary template filled in, with the separators of empty fields tidied away.

    ``"{subject} — {deal}"`` without a deal is ``"subject"``, not
    ``"subject —"``: separators (``— – - | : ·``) and whitespace left next to
    empty fields are trimmed at the ends, collapsed to one between two
    filled fields (``"a — {deal} — b"`` → ``"a — b"``), and brackets around
    an empty field vanish.  Text next to filled fields is left alone.
    """
    text = "".join(
        literal + ((values.get(name) or _EMPTY) if name is not None else "")
        for literal, name in parse_template(template, SUMMARY_FIELDS)
    )
    if _EMPTY not in text:
        return text
    text = _EMPTY_BRACKETS.sub(_EMPTY, text)

    def tidy(match: re.Match[str]) -> str:
        if match.start() == 0 or match.end() == len(text):
            return ""
        run = match.group().replace(_EMPTY, "")
        first = _FIRST_SEPARATOR.match(run)
        if first is None:
            return " " if run else ""
        after = " " if any(c.isspace() for c in run[first.end() :]) else ""
        return (" " if first.group(1) else "") + first.group(2) + after

    return _GAP.sub(tidy, text)


def summary_values(activity: Activity, type_name: str | None) -> dict[str, str]:
    names = {
        "subject": short_line(activity.subject),
        "type": short_line(type_name),
        "deal": short_line(activity.deal.name if activity.deal else None),
        "contact": short_line(activity.contact.full_name if activity.contact else None),
        "company": short_line(activity.company.name if activity.company else None),
        "assigned_to": short_line(activity.assigned_to_user.full_name if activity.assigned_to_user else None),
    }
    for alias, canonical in SUMMARY_ALIASES.items():
        names[alias] = names[canonical]
    return names
