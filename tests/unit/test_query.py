"""Feathers query encoding: bracket syntax that the API's ``qs`` parser reads back as sent."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any
from urllib.parse import unquote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apexcal.apex.query import (
    MAX_ARRAY_ITEMS,
    MAX_DEPTH,
    encode_query,
    encode_value,
    normalize_filters,
    split_in,
)
from apexcal.emulator.qs import parse_query as emulator_parse_query
from apexcal.errors import QueryError

# --- a small decoder with the parsing rules of Node's qs (depth 5, arrayLimit 20) --------

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def _key_segments(key: str) -> list[str]:
    """Split ``a[b][c]`` into ``["a", "b", "c"]``; past depth 5 the rest stays one literal key."""
    first = key.find("[")
    if first <= 0:
        return [key]
    segments = [key[:first]]
    pos = first
    while len(segments) <= MAX_DEPTH:
        match = _SEGMENT.match(key, pos)
        if match is None:
            break
        segments.append(match.group(1))
        pos = match.end()
    if pos < len(key):
        segments.append(key[pos:])
    return segments


def _insert(container: Any, segments: list[str], value: str) -> None:
    head, rest = segments[0], segments[1:]
    if isinstance(container, list):
        if not rest:
            container.append(value)
            return
        child: Any = {}
        container.append(child)
        _insert(child, rest, value)
        return
    if not rest:
        container[head] = value
        return
    child = container.get(head)
    if child is None:
        child = [] if rest[0] == "" else {}
        container[head] = child
    _insert(child, rest, value)


def _finalize(node: Any, *, root: bool = False) -> Any:
    if isinstance(node, list):
        if len(node) > MAX_ARRAY_ITEMS:
            return {str(i): _finalize(v) for i, v in enumerate(node)}
        return [_finalize(v) for v in node]
    if isinstance(node, dict):
        out = {k: _finalize(v) for k, v in node.items()}
        if not root and out and all(k.isdigit() and int(k) <= MAX_ARRAY_ITEMS for k in out):
            return [out[k] for k in sorted(out, key=int)]
        return out
    return node


def qs_decode(text: str) -> dict[str, Any]:
    """Decode a query string the way ``qs.parse`` does with its default options."""
    root: dict[str, Any] = {}
    for part in text.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        _insert(root, _key_segments(unquote_plus(key)), unquote_plus(value))
    result = _finalize(root, root=True)
    assert isinstance(result, dict)
    return result


def stringified(query: Any) -> Any:
    """What the server sees of ``query``: every scalar as its query-string text."""
    if isinstance(query, Mapping):
        return {k: stringified(v) for k, v in query.items()}
    if isinstance(query, list | tuple):
        return [stringified(v) for v in query]
    return encode_value(query)


# --- strategies ---------------------------------------------------------------------------

keys = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz_$-. 0123456789é&=+%#?/"),
    min_size=1,
    max_size=12,
).filter(lambda k: not k.isdigit())
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=20),
    st.dates(),
    st.datetimes(timezones=st.just(UTC)),
    st.times(),
)


def values(depth: int) -> st.SearchStrategy[Any]:
    """Query values whose bracket nesting stays within ``depth`` more levels."""
    if depth == 0:
        return scalars
    return st.one_of(
        scalars,
        st.lists(scalars, min_size=1, max_size=MAX_ARRAY_ITEMS),
        st.dictionaries(keys, st.deferred(lambda: values(depth - 1)), min_size=1, max_size=3),
        st.lists(
            st.dictionaries(keys, st.deferred(lambda: values(depth - 2)), min_size=1, max_size=2),
            min_size=1,
            max_size=3,
        )
        if depth >= 2
        else scalars,
    )


queries = st.dictionaries(keys, values(MAX_DEPTH), max_size=5)


class TestEncodeValue:
    def test_booleans_are_lowercase(self) -> None:
        """Booleans travel as the strings true and false, lowercase."""
        assert (encode_value(True), encode_value(False)) == ("true", "false")

    def test_dates_and_datetimes_are_iso(self) -> None:
        """Dates are ISO and datetimes use the API's millisecond UTC form."""
        assert encode_value(date(2025, 4, 1)) == "2025-04-01"
        plus2 = timezone(timedelta(hours=2))
        assert (
            encode_value(datetime(2025, 3, 28, 11, 30, 15, 391_999, tzinfo=plus2))
            == "2025-03-28T09:30:15.391Z"
        )
        assert encode_value(time(14, 30)) == "14:30:00"

    def test_naive_datetime_and_null_are_refused(self) -> None:
        """A naive datetime or a null has no faithful query-string form."""
        with pytest.raises(QueryError):
            encode_value(datetime(2025, 1, 1))
        with pytest.raises(QueryError):
            encode_value(None)


class TestEncodeQuery:
    def test_documented_shapes(self) -> None:
        """Sort, ranges, select, $in and $or come out in qs bracket syntax."""
        text = encode_query(
            {
                "organization_id": 27,
                "$sort": {"updated_at": 1, "id": 1},
                "start_date": {"$gte": date(2025, 4, 1)},
                "$select": ["id"],
                "activity_type": {"$in": ["call"]},
                "$or": [{"done": False}],
            }
        )
        assert text == (
            "organization_id=27&$sort[updated_at]=1&$sort[id]=1&start_date[$gte]=2025-04-01"
            "&$select[]=id&activity_type[$in][]=call&$or[0][done]=false"
        )

    def test_reserved_characters_in_values_are_escaped(self) -> None:
        """A value with & = + # % cannot break out of its parameter."""
        text = encode_query({"subject": "a&b=c+d #1 100%"})
        assert qs_decode(text) == {"subject": "a&b=c+d #1 100%"}

    def test_array_over_the_qs_limit_is_refused(self) -> None:
        """An array of 21 items, which qs would read as an object, is refused."""
        encode_query({"id": {"$in": list(range(MAX_ARRAY_ITEMS))}})
        with pytest.raises(QueryError, match="split_in"):
            encode_query({"id": {"$in": list(range(MAX_ARRAY_ITEMS + 1))}})

    def test_nesting_deeper_than_five_is_refused(self) -> None:
        """Brackets nested deeper than qs expands are refused with the path named."""
        five = encode_query({"a": {"b": {"c": {"d": {"e": {"f": "ok"}}}}}})
        assert qs_decode(five) == {"a": {"b": {"c": {"d": {"e": {"f": "ok"}}}}}}
        with pytest.raises(QueryError, match=r"a\[b\]\[c\]\[d\]\[e\]\[f\]: nested deeper than 5"):
            encode_query({"a": {"b": {"c": {"d": {"e": {"f": {"g": "no"}}}}}}})

    def test_empty_containers_are_refused(self) -> None:
        """An empty list or object would vanish and widen the query, so it is refused."""
        with pytest.raises(QueryError):
            encode_query({"id": {"$in": []}})
        with pytest.raises(QueryError):
            encode_query({"start_date": {}})

    def test_bracket_in_key_is_refused(self) -> None:
        """A key containing a bracket would be read as nesting."""
        with pytest.raises(QueryError):
            encode_query({"a[b]": 1})

    @given(queries)
    def test_round_trips_through_qs(self, query: dict[str, Any]) -> None:
        """Whatever is encoded decodes, with qs rules, to the same structure as text."""
        assert qs_decode(encode_query(query)) == stringified(query)

    @given(queries)
    def test_round_trips_through_the_emulator_parser(self, query: dict[str, Any]) -> None:
        """The emulator's independent qs parser reads back what was encoded."""
        assert emulator_parse_query(encode_query(query)) == stringified(query)


class TestSplitIn:
    def test_short_lists_are_left_alone(self) -> None:
        """A query without long $in lists is one query, unchanged."""
        query = {"organization_id": 27, "activity_type": {"$in": ["call", "meeting"]}}
        assert split_in(query) == [query]

    def test_empty_in_gives_no_query(self) -> None:
        """An empty $in matches nothing, so no request is needed."""
        assert split_in({"id": {"$in": []}}) == []

    def test_other_operators_beside_in_are_kept(self) -> None:
        """Operators sharing the field with $in stay on every chunk."""
        chunks = split_in({"id": {"$in": list(range(45)), "$gt": 3}})
        assert [len(c["id"]["$in"]) for c in chunks] == [20, 20, 5]
        assert all(c["id"]["$gt"] == 3 for c in chunks)

    @given(
        st.lists(st.integers(0, 60), max_size=70),
        st.lists(st.sampled_from("abcdefghijklmnopqrstuvwxyz"), max_size=30),
        st.integers(1, MAX_ARRAY_ITEMS),
    )
    def test_chunks_cover_the_same_records_disjointly(
        self, ids: list[int], kinds: list[str], max_items: int
    ) -> None:
        """Every (id, kind) pair the query matches is matched by exactly one chunk."""
        query = {"organization_id": 1, "id": {"$in": ids}, "kind": {"$in": kinds}}
        chunks = split_in(query, max_items=max_items)
        covered = [
            (i, k) for chunk in chunks for i in chunk["id"]["$in"] for k in chunk["kind"]["$in"]
        ]
        assert sorted(covered) == sorted({(i, k) for i in ids for k in kinds})
        for chunk in chunks:
            assert len(chunk["id"]["$in"]) <= max_items
            assert len(chunk["kind"]["$in"]) <= max_items
            encode_query(chunk)


class TestNormalizeFilters:
    def test_lists_become_in(self) -> None:
        """A list value is a set of accepted values, deduplicated."""
        assert normalize_filters({"activity_type": ["call", "call", "task"], "done": False}) == {
            "activity_type": {"$in": ["call", "task"]},
            "done": False,
        }
