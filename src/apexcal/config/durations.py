"""Durations as operators write them: ``"30s"``, ``"5m"``, ``"1h30m"``, ``"2d"``, or plain seconds.

A config is read by people, so intervals are written with units rather than
as bare second counts; bare integers are still accepted for scripts.  The
parser is exact (whole seconds only) so :func:`format_duration` gives a
canonical string that parses back to the same value.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
_PATTERN = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")

DURATION_HINT = 'a duration such as "30s", "5m", "1h30m" or "2d", or whole seconds'


def parse_duration(value: object) -> timedelta:
    """``value`` (a duration string, whole seconds or a timedelta) as a non-negative timedelta.

    Raises ``ValueError`` with an operator-readable message for anything else.
    """
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value
    if isinstance(value, bool):  # bool is an int subclass; `interval = true` is a mistake
        raise ValueError(f"not a duration: expected {DURATION_HINT}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit():
            return timedelta(seconds=int(text))
        match = _PATTERN.fullmatch(text)
        if text and match and any(match.groups()):
            seconds = sum(
                int(part) * factor
                for part, (_, factor) in zip(match.groups(), _UNITS, strict=True)
                if part
            )
            return timedelta(seconds=seconds)
    raise ValueError(f"not a duration: expected {DURATION_HINT}")


def format_duration(value: timedelta) -> str:
    """The canonical text of ``value`` (``"1h30m"``, ``"0s"``); sub-second parts are dropped."""
    remaining = int(value.total_seconds())
    if remaining <= 0:
        return "0s"
    parts = []
    for unit, factor in _UNITS:
        count, remaining = divmod(remaining, factor)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _positive(value: object) -> timedelta:
    parsed = parse_duration(value)
    if parsed <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return parsed


_serializer = PlainSerializer(format_duration, return_type=str)
_schema = WithJsonSchema({"type": "string", "description": DURATION_HINT})

Duration = Annotated[timedelta, PlainValidator(_positive), _serializer, _schema]
"""A strictly positive duration."""

DurationOrZero = Annotated[timedelta, PlainValidator(parse_duration), _serializer, _schema]
"""A duration that may be ``"0s"`` (e.g. a reconcile sweep on every cycle, no jitter)."""
