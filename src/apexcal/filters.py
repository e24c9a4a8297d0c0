"""Activity filters: the API's documented query parameters, matched against the mirror.

Targets and feeds select activities with ``filter`` tables whose keys are the
API's documented query parameters; :func:`matches` applies one to the local
mirror, where the daemon keeps every activity of the organization and each
target takes its share.

A value is a scalar (equality), a list (any of, ``$in``) or a table of Feathers
operators (``$gte``, ``$lte``, ``$gt``, ``$lt``, ``$ne``, ``$in``, ``$nin``).
``subject`` matches a case-insensitive substring, as the API does.  This module is
pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from apexcal.apex.models import Activity

OPERATORS = frozenset({"$gt", "$gte", "$lt", "$lte", "$ne", "$in", "$nin"})


def _coerce(field: str, value: Any) -> Any:
    if field == "start_date" and isinstance(value, str):
        return date.fromisoformat(value)
    return value


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if op == "$in":
        return actual in list(expected)
    if op == "$nin":
        return actual not in list(expected)
    if op == "$ne":
        return bool(actual != expected)
    if actual is None:
        return False
    if op == "$gt":
        return bool(actual > expected)
    if op == "$gte":
        return bool(actual >= expected)
    if op == "$lt":
        return bool(actual < expected)
    if op == "$lte":
        return bool(actual <= expected)
    raise ValueError(f"unknown filter operator {op!r}")


def _match_value(field: str, actual: Any, condition: Any) -> bool:
    if field == "subject" and isinstance(condition, str):
        return actual is not None and condition.casefold() in str(actual).casefold()
    if isinstance(condition, Mapping):
        for op, expected in condition.items():
            if isinstance(expected, list | tuple):
                expected = [_coerce(field, e) for e in expected]
            else:
                expected = _coerce(field, expected)
            if not _compare(actual, op, expected):
                return False
        return True
    if isinstance(condition, list | tuple):
        return actual in [_coerce(field, c) for c in condition]
    return bool(actual == _coerce(field, condition))


def matches(activity: Activity, filter_: Mapping[str, Any]) -> bool:
    """Whether ``activity`` satisfies every condition of ``filter_``."""
    for field, condition in filter_.items():
        if not _match_value(field, getattr(activity, field, None), condition):
            return False
    return True
