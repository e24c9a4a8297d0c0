"""Feathers query semantics over in-memory records: filters, ``$sort``, ``$select``, paging.

A query (as parsed from the URL by :func:`~apexcal.emulator.qs.parse_query`, or taken
from a ``{"query": {...}}`` JSON body) is compiled once into a :class:`FindQuery`:
a row selector (one generated comprehension), a sort, ``$limit``/``$skip`` and the selected fields.  Values arrive
as strings from a URL and are converted to the field's type (``"46"`` → 46,
``"true"`` → True, ``"null"`` → None) so they compare as the field does.

Comparisons follow SQL, like the production service's database: ``$gt``/``$gte``/
``$lt``/``$lte``/``$in`` never match a null field; ``$ne: x`` does not match nulls
either unless ``x`` is null (``IS NOT NULL``).  Ascending sorts put nulls last,
descending first (PostgreSQL's order).  Every sort ends with ``id`` ascending so
paging is deterministic.  A small page of many matches (:func:`first`) is
found without ordering every match.  Text fields listed as partial (``subject``, ``name``)
match a plain value as a case-insensitive substring.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import Enum
from operator import itemgetter
from typing import Any

from apexcal.apex.models import format_timestamp, parse_timestamp
from apexcal.errors import EmulatorQueryError

Record = Mapping[str, Any]
Selector = Callable[[Iterable[Record]], list[Record]]



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
    select_rows: Selector
    sort: tuple[tuple[str, int], ...]
    limit: int
    skip: int
    select: tuple[str, ...] | None
    params: Mapping[str, Any]
    updated_from: tuple[str, str] | None = None


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
    raise EmulatorQueryError(f"Invalid value for '{field}': {value!r}")


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
        raise EmulatorQueryError(f"Invalid query: '{field}[{op}]' must be an array")
    return [value]


class _Compiler:
    """Builds one Python expression over a record ``r`` for a whole filter.

    The filter is compiled into a single list comprehension, so a find over a
    hundred thousand records costs one pass with no function call per record.
    Field names come from the schema and operators from a fixed set; every
    query value is bound as a constant, never written into the source.
    """

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.constants: dict[str, Any] = {}

    def const(self, value: Any) -> str:
        name = f"c{len(self.constants)}"
        self.constants[name] = value
        return name

    def compare(self, field: str, op: str, operand: Any) -> str:
        col = f"r[{field!r}]"
        if op in ("$in", "$nin"):
            values = frozenset(v for v in operand if v is not None)
            test = "in" if op == "$in" else "not in"
            return f"({col} is not None and {col} {test} {self.const(values)})"
        if op == "$ne":
            if operand is None:
                return f"({col} is not None)"
            return f"({col} is not None and {col} != {self.const(operand)})"
        if operand is None:
            return "False"
        symbol = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[op]
        return f"({col} is not None and {col} {symbol} {self.const(operand)})"

    def field(self, field: str, spec: Any) -> str:
        kind = self.schema.fields[field]
        if isinstance(spec, Mapping):
            parts: list[str] = []
            for op, operand in spec.items():
                if op not in _OPERATORS:
                    raise EmulatorQueryError(f"Invalid query operator '{op}' on '{field}'")
                if kind is Kind.OBJECT and not (op == "$ne" and operand in (None, "null")):
                    raise EmulatorQueryError(f"'{field}' can only be compared with null")
                if op in ("$in", "$nin"):
                    items = [convert(field, kind, v) for v in _as_list(field, op, operand)]
                    parts.append(self.compare(field, op, items))
                else:
                    parts.append(self.compare(field, op, convert(field, kind, operand)))
            return _joined(parts, "and")
        if isinstance(spec, list):
            return self.compare(field, "$in", [convert(field, kind, v) for v in spec])
        if kind is Kind.OBJECT:
            _null_only(field, spec)
        value = None if kind is Kind.OBJECT else convert(field, kind, spec)
        col = f"r[{field!r}]"
        if value is None:
            return f"({col} is None)"
        if field in self.schema.partial:
            return (
                f"({col} is not None and {self.const(str(value).casefold())} in {col}.casefold())"
            )
        return f"({col} == {self.const(value)})"

    def query(self, query: Mapping[str, Any], *, skip: frozenset[str] = frozenset()) -> str:
        parts: list[str] = []
        for key, spec in query.items():
            if (
                key in ("$limit", "$skip", "$sort", "$select")
                or key in self.schema.extra_params
                or key in skip
            ):
                continue
            if key in ("$or", "$and"):
                branches = [self.query(b) for b in _branches(key, spec)]
                parts.append(_joined(branches, "or" if key == "$or" else "and"))
                continue
            if key.startswith("$"):
                raise EmulatorQueryError(f"Invalid query parameter '{key}'")
            if key not in self.schema.fields:
                raise EmulatorQueryError(f"Invalid query field '{key}'")
            parts.append(self.field(key, spec))
        return _joined(parts, "and")


def _null_only(field: str, spec: Any) -> None:
    if spec is not None and spec != "null":
        raise EmulatorQueryError(f"'{field}' can only be compared with null")


def _joined(parts: Sequence[str], word: str) -> str:
    if not parts:
        return "True" if word == "and" else "False"
    return "(" + f" {word} ".join(parts) + ")"


def compile_filter(
    schema: Schema, query: Mapping[str, Any], *, skip: frozenset[str] = frozenset()
) -> Selector:
    """A function picking the records that match the filter part of ``query``.

    Paging, sort and the service's extra parameters are ignored, as are the
    top-level keys in ``skip`` (e.g. the organization a caller already partitioned by).
    """
    compiler = _Compiler(schema)
    expression = compiler.query(query, skip=skip)
    source = f"lambda rows: [r for r in rows if {expression}]"
    # Safe: the source holds only schema field names, fixed operators and constant names.
    selector: Selector = eval(source, {"__builtins__": {}, **compiler.constants})  # noqa: S307
    return selector


def _branches(key: str, spec: Any) -> list[Mapping[str, Any]]:
    if isinstance(spec, Mapping):
        # Either qs turned a long array into an object, or a single branch was sent.
        spec = list(spec.values()) if all(k.isdigit() for k in spec) else [spec]
    if not isinstance(spec, list) or not all(isinstance(b, Mapping) for b in spec):
        raise EmulatorQueryError(f"Invalid query: '{key}' must be an array of queries")
    return spec


def _int_param(name: str, value: Any) -> int | None:
    """Feathers reads ``$limit``/``$skip`` with parseInt: garbage or negatives mean 'unset'."""
    if value is None or isinstance(value, Mapping | list | bool):
        return None
    text = str(value).strip()
    digits = text[1:] if text.startswith("-") else text
    head = ""
    for ch in digits:
        if ch not in "0123456789":
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
        raise EmulatorQueryError("Invalid query: '$sort' must be an object of field: 1 | -1")
    keys: list[tuple[str, int]] = []
    for field, direction in spec.items():
        if field not in schema.fields or schema.fields[field] is Kind.OBJECT:
            raise EmulatorQueryError(f"Invalid sort field '{field}'")
        try:
            number = int(str(direction))
        except ValueError:
            raise EmulatorQueryError(f"Invalid sort direction for '{field}': {direction!r}") from None
        if number not in (1, -1):
            raise EmulatorQueryError(f"Invalid sort direction for '{field}': {direction!r}")
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
        raise EmulatorQueryError("Invalid query: '$select' must be an array of field names")
    for field in spec:
        if field not in schema.fields:
            raise EmulatorQueryError(f"Invalid select field '{field}'")
    return tuple(dict.fromkeys(["id", *spec]))


def compile_find(
    schema: Schema, query: Mapping[str, Any], *, paginate_default: int, paginate_max: int
) -> FindQuery:
    """Compile a find query; raises :class:`EmulatorQueryError` for anything the service refuses."""
    org = query.get("organization_id")
    if org is None or isinstance(org, Mapping | list):
        raise EmulatorQueryError("organization_id is required")
    organization_id = convert("organization_id", Kind.INT, org)
    if organization_id is None:
        raise EmulatorQueryError("organization_id is required")
    limit = _int_param("$limit", query.get("$limit"))
    limit = min(paginate_default if limit is None else limit, paginate_max)
    skip = _int_param("$skip", query.get("$skip")) or 0
    return FindQuery(
        organization_id=organization_id,
        select_rows=compile_filter(schema, query, skip=frozenset({"organization_id"})),
        sort=_sort(schema, query.get("$sort")),
        limit=limit,
        skip=skip,
        select=_select(schema, query.get("$select")),
        params={k: query[k] for k in schema.extra_params if k in query},
        updated_from=_lower_bound(schema, query),
    )


def _lower_bound(schema: Schema, query: Mapping[str, Any]) -> tuple[str, str] | None:
    """A lower bound ``("$gte" | "$gt", instant)`` every match has on ``updated_at``, or None.

    It comes from a top-level ``updated_at`` filter and from an ``$or`` whose every
    branch bounds ``updated_at`` (a keyset cursor); the tighter one is used.  It is
    only a starting point in the feed index: the full filter is still applied.
    """
    if schema.fields.get("updated_at") is not Kind.INSTANT:
        return None
    bounds = [b for b in (_branch_bound(query), _or_bound(query.get("$or"))) if b is not None]
    if not bounds:
        return None
    value = max(v for _, v in bounds)
    ops = {op for op, v in bounds if v == value}
    return ("$gt" if ops == {"$gt"} else "$gte", value)


def _branch_bound(query: Mapping[str, Any]) -> tuple[str, str] | None:
    spec = query.get("updated_at")
    try:
        if isinstance(spec, Mapping):
            for op in ("$gte", "$gt"):
                if op in spec:
                    value = convert("updated_at", Kind.INSTANT, spec[op])
                    return None if value is None else (op, value)
        elif isinstance(spec, str):
            value = convert("updated_at", Kind.INSTANT, spec)
            return None if value is None else ("$gte", value)
    except EmulatorQueryError:
        return None  # the filter itself reports it
    return None


def _or_bound(spec: Any) -> tuple[str, str] | None:
    if not isinstance(spec, list) or not spec or not all(isinstance(b, Mapping) for b in spec):
        return None
    values = [b[1] for b in map(_branch_bound, spec) if b is not None]
    return ("$gte", min(values)) if len(values) == len(spec) else None


def order(records: Iterable[Record], sort: Sequence[tuple[str, int]]) -> list[Record]:
    """Sort ``records`` by ``sort`` then ``id``; nulls last ascending, first descending."""
    result = sorted(records, key=itemgetter("id"))
    keys = list(sort)
    while keys and keys[-1] == ("id", 1):
        keys.pop()  # already in id order
    # Stable passes from the last key to the first; ``reverse`` keeps ties in id order.
    passes: list[tuple[list[str], int]] = []
    for field, direction in keys:
        if passes and passes[-1][1] == direction:
            passes[-1][0].append(field)
        else:
            passes.append(([field], direction))
    for fields, direction in reversed(passes):
        if any(None in map(itemgetter(f), result) for f in fields):
            # Some values are null: one stable pass per field, nulls set apart.
            for field in reversed(fields):
                result = _sort_nullable(result, field, direction)
        else:
            result.sort(key=itemgetter(*fields), reverse=direction == -1)
    return result


def first(records: Sequence[Record], sort: Sequence[tuple[str, int]], count: int) -> list[Record]:
    """``order(records, sort)[:count]``, without ordering every record when ``count`` is small.

    The ``count``-th value of the first sort field (nulls placed as
    :func:`order` places them) is found with a heap; only the records whose
    first-field value is not behind it can be on the page, and only those are
    fully ordered.  Exact, ties and nulls included; with many ties on the
    first field it costs what a full ordering does.
    """
    if count <= 0:
        return []
    if count * 4 > len(records):
        return order(records, sort)[:count]
    field, direction = sort[0] if sort else ("id", 1)
    values = [r[field] for r in records]
    present = [v for v in values if v is not None]
    nulls = len(values) - len(present)
    if direction == 1:  # nulls last
        if len(present) < count:
            return order(records, sort)[:count]
        bound = heapq.nsmallest(count, present)[-1]
        candidates = [r for r, v in zip(records, values, strict=True) if v is not None and not bound < v]
    elif nulls >= count:  # descending: nulls first, and they fill the page
        candidates = [r for r, v in zip(records, values, strict=True) if v is None]
    else:
        bound = heapq.nlargest(count - nulls, present)[-1]
        candidates = [r for r, v in zip(records, values, strict=True) if v is None or not v < bound]
    return order(candidates, sort)[:count]


def _sort_nullable(records: list[Record], field: str, direction: int) -> list[Record]:
    present = [r for r in records if r[field] is not None]
    nulls = [r for r in records if r[field] is None]
    present.sort(key=itemgetter(field), reverse=direction == -1)
    return present + nulls if direction == 1 else nulls + present
