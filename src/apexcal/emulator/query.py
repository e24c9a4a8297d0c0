"""Feathers query semantics over in-memory records: filters, ``$sort``, ``$select``, paging.

A query (as parsed from the URL by :func:`~apexcal.emulator.qs.parse_query`, or taken
from a ``{"query": {...}}`` JSON body) is compiled once into a :class:`FindQuery`:
a predicate, a sort key, ``$limit``/``$skip`` and the selected fields.  Values arrive
as strings from a URL and are converted to the field's type (``"46"`` → 46,
``"true"`` → True, ``"null"`` → None) so they compare as the field does.

Comparisons follow SQL, like the production service's database: ``$gt``/``$gte``/
``$lt``/``$lte``/``$in`` never match a null field; ``$ne: x`` does not match nulls
either unless ``x`` is null (``IS NOT NULL``).  Ascending sorts put nulls last,
descending first (PostgreSQL's order).  Every sort ends with ``id`` ascending so
paging is deterministic.  Text fields listed as partial (``subject``, ``name``)
match a plain value as a case-insensitive substring.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import Enum
from typing import Any

from apexcal.apex.models import format_timestamp, parse_timestamp
from apexcal.errors import ApexcalError

Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]


class QueryError(ApexcalError):
    """A query the service refuses (answered as 400 BadRequest with this message)."""


class Kind(Enum):
    """How a field's values are typed and compared."""

    INT = "int"
    TEXT = "text"
    BOOL = "bool"
    DATE = "date"
    TIME = "time"
    INSTANT = "instant"
    OBJECT = "object"


@dataclass(frozen=True, kw_only=True)
class Schema:
    """The filterable fields of one service and which of them match partially."""

    fields: Mapping[str, Kind]
    partial: frozenset[str] = frozenset()
    extra_params: frozenset[str] = frozenset()


@dataclass(frozen=True, kw_only=True)
class FindQuery:
    """A compiled find: which records, in which order, which page, which fields."""

    organization_id: int
    predicate: Predicate
    sort: tuple[tuple[str, int], ...]
    limit: int
    skip: int
    select: tuple[str, ...] | None
    params: Mapping[str, Any]


_OPERATORS = frozenset({"$gt", "$gte", "$lt", "$lte", "$ne", "$in", "$nin"})
_SPECIAL = frozenset({"$limit", "$skip", "$sort", "$select", "$or", "$and"})


def convert(field: str, kind: Kind, value: Any) -> Any:
    """Convert one query value (often a string from the URL) to the field's type."""
    if value is None or value == "null":
        return None
    try:
        if kind is Kind.INT:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            return int(str(value).strip())
        if kind is Kind.BOOL:
            if isinstance(value, bool):
                return value
            if value in ("true", "false"):
                return value == "true"
            raise ValueError
        if kind is Kind.TEXT:
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                return str(value)
            raise ValueError
        if kind is Kind.DATE:
            return date.fromisoformat(str(value)).isoformat()
        if kind is Kind.TIME:
            return time.fromisoformat(str(value)).strftime("%H:%M:%S")
        if kind is Kind.INSTANT:
            return _instant(str(value))
    except (ValueError, TypeError):
        pass
    raise QueryError(f"Invalid value for '{field}': {value!r}")


def _instant(text: str) -> str:
    try:
        return format_timestamp(parse_timestamp(text))
    except ValueError:
        # A bare date compares as midnight UTC.
        day = date.fromisoformat(text)
        return format_timestamp(datetime(day.year, day.month, day.day, tzinfo=UTC))


def _as_list(field: str, op: str, value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        # qs turned a long array into an object: the server does not see a list.
        raise QueryError(f"Invalid query: '{field}[{op}]' must be an array")
    return [value]


def _compare(field: str, op: str, operand: Any) -> Predicate:
    if op == "$in":
        allowed = frozenset(operand)
        return lambda r: r.get(field) is not None and r.get(field) in allowed
    if op == "$nin":
        banned = frozenset(operand)
        return lambda r: r.get(field) is not None and r.get(field) not in banned
    if op == "$ne":
        if operand is None:
            return lambda r: r.get(field) is not None
        return lambda r: r.get(field) is not None and r.get(field) != operand
    if operand is None:
        return lambda r: False
    if op == "$gt":
        return lambda r: (v := r.get(field)) is not None and v > operand
    if op == "$gte":
        return lambda r: (v := r.get(field)) is not None and v >= operand
    if op == "$lt":
        return lambda r: (v := r.get(field)) is not None and v < operand
    return lambda r: (v := r.get(field)) is not None and v <= operand


def _field_predicate(schema: Schema, field: str, spec: Any) -> Predicate:
    kind = schema.fields[field]
    if isinstance(spec, Mapping):
        parts: list[Predicate] = []
        for op, operand in spec.items():
            if op not in _OPERATORS:
                raise QueryError(f"Invalid query operator '{op}' on '{field}'")
            if kind is Kind.OBJECT and not (op == "$ne" and operand in (None, "null")):
                raise QueryError(f"'{field}' can only be compared with null")
            if op in ("$in", "$nin"):
                items = [convert(field, kind, v) for v in _as_list(field, op, operand)]
                parts.append(_compare(field, op, items))
            else:
                parts.append(_compare(field, op, convert(field, kind, operand)))
        return _all(parts)
    if isinstance(spec, list):
        return _compare(field, "$in", [convert(field, kind, v) for v in spec])
    if kind is Kind.OBJECT:
        _null_only(field, spec)
    value = None if kind is Kind.OBJECT else convert(field, kind, spec)
    if value is None:
        return lambda r: r.get(field) is None
    if field in schema.partial:
        needle = str(value).casefold()
        return lambda r: (v := r.get(field)) is not None and needle in v.casefold()
    return lambda r: r.get(field) == value


def _null_only(field: str, spec: Any) -> None:
    if spec is not None and spec != "null":
        raise QueryError(f"'{field}' can only be compared with null")


def _all(parts: Sequence[Predicate]) -> Predicate:
    if not parts:
        return lambda r: True
    if len(parts) == 1:
        return parts[0]
    return lambda r: all(p(r) for p in parts)


def compile_filter(schema: Schema, query: Mapping[str, Any]) -> Predicate:
    """The predicate for the filter part of ``query`` (paging and sort keys ignored)."""
    parts: list[Predicate] = []
    for key, spec in query.items():
        if key in ("$limit", "$skip", "$sort", "$select") or key in schema.extra_params:
            continue
        if key in ("$or", "$and"):
            branches = _branches(key, spec)
            compiled = [compile_filter(schema, b) for b in branches]
            if key == "$or":
                parts.append(lambda r, c=compiled: any(p(r) for p in c))  # type: ignore[misc]
            else:
                parts.extend(compiled)
            continue
        if key.startswith("$"):
            raise QueryError(f"Invalid query parameter '{key}'")
        if key not in schema.fields:
            raise QueryError(f"Invalid query field '{key}'")
        parts.append(_field_predicate(schema, key, spec))
    return _all(parts)


def _branches(key: str, spec: Any) -> list[Mapping[str, Any]]:
    if isinstance(spec, Mapping):
        # Either qs turned a long array into an object, or a single branch was sent.
        spec = list(spec.values()) if all(k.isdigit() for k in spec) else [spec]
    if not isinstance(spec, list) or not all(isinstance(b, Mapping) for b in spec):
        raise QueryError(f"Invalid query: '{key}' must be an array of queries")
    return spec


def _int_param(name: str, value: Any) -> int | None:
    """Feathers reads ``$limit``/``$skip`` with parseInt: garbage or negatives mean 'unset'."""
    if value is None or isinstance(value, Mapping | list | bool):
        return None
    text = str(value).strip()
    digits = text[1:] if text.startswith("-") else text
    head = ""
    for ch in digits:
        if not ch.isdigit():
            break
        head += ch
    if not head:
        return None
    number = int(head) * (-1 if text.startswith("-") else 1)
    return number if number >= 0 else None


def _sort(schema: Schema, spec: Any) -> tuple[tuple[str, int], ...]:
    if spec is None:
        return ()
    if not isinstance(spec, Mapping):
        raise QueryError("Invalid query: '$sort' must be an object of field: 1 | -1")
    keys: list[tuple[str, int]] = []
    for field, direction in spec.items():
        if field not in schema.fields or schema.fields[field] is Kind.OBJECT:
            raise QueryError(f"Invalid sort field '{field}'")
        try:
            number = int(str(direction))
        except ValueError:
            raise QueryError(f"Invalid sort direction for '{field}': {direction!r}") from None
        if number not in (1, -1):
            raise QueryError(f"Invalid sort direction for '{field}': {direction!r}")
        keys.append((field, number))
    return tuple(keys)


def _select(schema: Schema, spec: Any) -> tuple[str, ...] | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = [spec]
    elif isinstance(spec, Mapping):
        spec = list(spec.values())
    if not isinstance(spec, list) or not all(isinstance(f, str) for f in spec):
        raise QueryError("Invalid query: '$select' must be an array of field names")
    for field in spec:
        if field not in schema.fields:
            raise QueryError(f"Invalid select field '{field}'")
    return tuple(dict.fromkeys(["id", *spec]))


def compile_find(
    schema: Schema, query: Mapping[str, Any], *, paginate_default: int, paginate_max: int
) -> FindQuery:
    """Compile a find query; raises :class:`QueryError` for anything the service refuses."""
    org = query.get("organization_id")
    if org is None or isinstance(org, Mapping | list):
        raise QueryError("organization_id is required")
    organization_id = convert("organization_id", Kind.INT, org)
    if organization_id is None:
        raise QueryError("organization_id is required")
    limit = _int_param("$limit", query.get("$limit"))
    limit = min(paginate_default if limit is None else limit, paginate_max)
    skip = _int_param("$skip", query.get("$skip")) or 0
    return FindQuery(
        organization_id=organization_id,
        predicate=compile_filter(schema, query),
        sort=_sort(schema, query.get("$sort")),
        limit=limit,
        skip=skip,
        select=_select(schema, query.get("$select")),
        params={k: query[k] for k in schema.extra_params if k in query},
    )


def order(records: Iterable[Record], sort: Sequence[tuple[str, int]]) -> list[Record]:
    """Sort ``records`` by ``sort`` then ``id``; nulls last ascending, first descending."""
    result = sorted(records, key=lambda r: r["id"])
    if not sort:
        return result
    if all(direction == 1 for _, direction in sort):
        fields = [f for f, _ in sort]
        # One pass: the stable sort above already ordered ties by id.
        return sorted(result, key=lambda r: tuple(_null_key(r.get(f)) for f in fields))
    for field, direction in reversed(sort):
        result.sort(key=lambda r, f=field: _null_key(r.get(f)), reverse=direction == -1)  # type: ignore[misc]
    return result


def _null_key(value: Any) -> tuple[bool, Any]:
    return (value is None, value)
