"""Feathers query encoding: a query dict to a URL query string that ``qs`` parses back.

The AchieveApex API is a Feathers service whose query string is parsed by the
Node ``qs`` library, so a query travels in bracket syntax::

    {"$sort": {"updated_at": 1, "id": 1}}       $sort[updated_at]=1&$sort[id]=1
    {"start_date": {"$gte": date(2025, 4, 1)}}  start_date[$gte]=2025-04-01
    {"$select": ["id"]}                         $select[]=id
    {"activity_type": {"$in": ["call"]}}        activity_type[$in][]=call
    {"$or": [{"done": False}]}                  $or[0][done]=false

``qs`` has two limits that silently change the meaning of a query instead of
failing: an array of more than 20 items is parsed as an object, and brackets
nested deeper than 5 levels are not expanded.  The encoder refuses both with
:class:`QueryError`; :func:`split_in` splits long ``$in`` lists into several
queries whose results, taken together, are those of the original one.

Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from apexcal.apex.models import format_timestamp
from apexcal.errors import QueryError

#: The most items ``qs`` parses as an array (its ``arrayLimit``).
MAX_ARRAY_ITEMS = 20
#: The deepest bracket nesting ``qs`` expands (its ``depth``).
MAX_DEPTH = 5

Query = Mapping[str, Any]

# Characters left readable in keys: brackets are the syntax itself, ``$`` starts operators.
_KEY_SAFE = "$[]"
# Characters left readable in values: ISO dates and times read as they are.
_VALUE_SAFE = ":"



def encode_value(value: object) -> str:
    """One scalar as the API expects it in a query string.

    Booleans are lowercase ``true``/``false``, dates ISO (``2025-04-01``),
    datetimes the API's own millisecond UTC form (``2025-03-28T09:30:15.391Z``).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise QueryError(f"a datetime in a query needs a time zone: {value!r}")
        return format_timestamp(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise QueryError(f"not a finite number: {value!r}")
        return repr(value)
    if isinstance(value, str):
        return value
    if value is None:
        # qs has no null: "a=" would mean the empty string, so a null filter is refused.
        raise QueryError("null cannot be expressed in a query string")
    raise QueryError(f"cannot encode a {type(value).__name__} in a query: {value!r}")


def _is_scalar(value: object) -> bool:
    return not isinstance(value, Mapping | list | tuple)


def _check_key(key: object, *, nested: bool) -> str:
    if not isinstance(key, str) or not key:
        raise QueryError(f"query keys must be non-empty strings: {key!r}")
    if any(c in key for c in "[]"):
        raise QueryError(f"query key {key!r} contains a bracket")
    if nested and key.isdigit():
        # qs would turn {"0": x} into an array.
        raise QueryError(f"query key {key!r} is all digits: qs would read an array")
    return key


def iter_pairs(query: Query) -> Iterator[tuple[str, str]]:
    """The ``(key, value)`` pairs of ``query`` in bracket syntax, unescaped, in order.

    Raises :class:`QueryError` for what ``qs`` would misread: arrays over
    :data:`MAX_ARRAY_ITEMS`, nesting deeper than :data:`MAX_DEPTH`, empty
    lists and objects (they would vanish from the query and widen it),
    nulls, and keys containing brackets.
    """
    for key, value in query.items():
        yield from _pairs(_check_key(key, nested=False), value, depth=0)


def _pairs(prefix: str, value: object, *, depth: int) -> Iterator[tuple[str, str]]:
    if _is_scalar(value):
        yield prefix, encode_value(value)
        return
    if depth + 1 > MAX_DEPTH:
        raise QueryError(f"{prefix}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        if not value:
            raise QueryError(f"{prefix}: an empty object cannot be expressed in a query string")
        for key, item in value.items():
            yield from _pairs(f"{prefix}[{_check_key(key, nested=True)}]", item, depth=depth + 1)
        return
    items: Sequence[object] = value  # type: ignore[assignment]
    if not items:
        raise QueryError(f"{prefix}: an empty list cannot be expressed in a query string")
    if len(items) > MAX_ARRAY_ITEMS:
        raise QueryError(
            f"{prefix}: {len(items)} items; the API's parser reads more than "
            f"{MAX_ARRAY_ITEMS} as an object (split the query with split_in)"
        )
    if all(_is_scalar(item) for item in items):
        for item in items:
            yield f"{prefix}[]", encode_value(item)
    else:
        for index, item in enumerate(items):
            yield from _pairs(f"{prefix}[{index}]", item, depth=depth + 1)


def encode_query(query: Query) -> str:
    """``query`` as a URL query string in ``qs`` bracket syntax (without the ``?``)."""
    return "&".join(
        f"{quote(key, safe=_KEY_SAFE)}={quote(value, safe=_VALUE_SAFE)}"
        for key, value in iter_pairs(query)
    )


def in_filter(values: Sequence[object]) -> dict[str, list[object]]:
    """``{"$in": values}`` with duplicates removed, first occurrence first."""
    return {"$in": list(dict.fromkeys(values))}


def normalize_filters(filters: Query) -> dict[str, Any]:
    """A filter mapping as a Feathers query: a list or tuple value becomes ``$in``."""
    return {
        key: in_filter(value) if isinstance(value, list | tuple) else value
        for key, value in filters.items()
    }


def split_in(query: Query, *, max_items: int = MAX_ARRAY_ITEMS) -> list[dict[str, Any]]:
    """Split ``query`` so that no top-level ``field: {"$in": [...]}`` list is longer than ``max_items``.

    The results of the returned queries are disjoint (duplicate values are
    dropped first) and together equal the results of ``query``.  An empty
    ``$in`` matches nothing, so it gives no query at all.  Long lists the
    split cannot make exact — ``$nin``, or ``$in`` inside ``$or`` — are
    refused by the encoder.
    """
    if max_items < 1:
        raise ValueError("max_items must be at least 1")
    axes: list[tuple[str, list[list[object]]]] = []
    for key, condition in query.items():
        if isinstance(condition, Mapping) and isinstance(condition.get("$in"), list | tuple):
            values = list(dict.fromkeys(condition["$in"]))
            if not values:
                return []
            chunks = [values[i : i + max_items] for i in range(0, len(values), max_items)]
            axes.append((key, chunks))
    if not axes:
        return [dict(query)]
    queries = []
    for combo in itertools.product(*(chunks for _, chunks in axes)):
        chunked = dict(query)
        for (key, _), chunk in zip(axes, combo, strict=True):
            chunked[key] = {**query[key], "$in": chunk}
        queries.append(chunked)
    return queries
