"""Text hygiene for iCalendar values.

CRM text can hold anything: control characters, lone surrogates, CR/LF in a
subject, megabytes of notes.  These helpers make it safe to put in a property
value: one-line fields can never break a content line (so nothing can inject a
property), multi-line fields keep their newlines, and long text is cut at a
byte budget without splitting a UTF-8 sequence.
"""

from __future__ import annotations

import re
import unicodedata

TRUNCATION_MARKER = "… (truncated)"
MAX_LINE_BYTES = 1024
"""Budget of one one-line CRM value (subject, a name, a location) in an object: a megabyte subject must not make an object a server refuses."""

# C0/C1 controls, DEL, lone surrogates and the Unicode line/paragraph separators.
_LINE_BREAKS = re.compile(r"\r\n|[\r\n\u0085\u2028\u2029\v\f]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")
_SPACES = re.compile(r"[ \t]+")


def clean_line(value: str | None) -> str:
    """One-line text: line breaks and tabs become spaces, controls vanish, runs of spaces collapse."""
    if not value:
        return ""
    text = _LINE_BREAKS.sub(" ", value)
    text = _CONTROL.sub("", text.replace("\t", " "))
    return _SPACES.sub(" ", text).strip()


def param_text(value: str) -> str:
    """Text for a parameter value (a name, a place): each backslash becomes a fullwidth reverse solidus (＼).

    A backslash is an ordinary character in a parameter value (RFC 5545
    §3.1), but icalendar's parser (Xandikos reads with it) takes it for an
    escape, quoted or not: ``CN=\\;SCHEDULE-AGENT=CLIENT`` comes back as one
    ``CN`` running into the next parameter, ``X-TITLE="a\\\\b"`` as ``a\\b``.
    """
    return value.replace("\\", "\uff3c")


def clean_text(value: str | None) -> str:
    """Multi-line text: line breaks normalised to ``\\n``, other controls dropped, tabs kept as spaces."""
    if not value:
        return ""
    text = _LINE_BREAKS.sub("\n", value)
    text = _CONTROL.sub("", text.replace("\t", " "))
    return text.strip()


def short_line(value: str | None) -> str:
    """:func:`clean_line` cut at :data:`MAX_LINE_BYTES` (with :data:`TRUNCATION_MARKER`)."""
    return truncate_utf8(clean_line(value), MAX_LINE_BYTES)


def truncate_utf8(text: str, max_bytes: int) -> str:
    """Cut ``text`` so its UTF-8 form fits ``max_bytes``, ending with :data:`TRUNCATION_MARKER` when cut."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    budget = max(0, max_bytes - len(TRUNCATION_MARKER.encode("utf-8")))
    # errors="ignore" drops a partial trailing sequence, never a whole character before it.
    head = data[:budget].decode("utf-8", errors="ignore")
    # Do not leave a dangling combining mark separated from its base.
    while head and unicodedata.combining(head[-1]):
        head = head[:-1]
    return head + TRUNCATION_MARKER
