"""Query semantics of the emulator: Node ``qs`` parsing and Feathers filters, sort, select, paging."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apexcal.emulator import EmulatorState, create_app, parse_query
from apexcal.emulator.query import first, order
from tests.fixtures.emulator import EmulatorHandle


def _encode(value: Any, prefix: str) -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _encode(v, f"{prefix}[{k}]")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _encode(v, f"{prefix}[{i}]")]
    return [f"{quote(prefix, safe='[]$')}={quote(value, safe='')}"]


def _query_string(query: dict[str, Any]) -> str:
    return "&".join(p for k, v in query.items() for p in _encode(v, k))


_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_$", min_size=1, max_size=8)
_values = st.text(max_size=10)
_nested = st.recursive(
    _values,
    lambda inner: (
        st.lists(inner, min_size=1, max_size=20)
        | st.dictionaries(_keys, inner, min_size=1, max_size=4)
    ),
    max_leaves=12,
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(_depth(v) for v in value.values())
    if isinstance(value, list):
        return 1 + max(_depth(v) for v in value)
    return 0


class TestQsParsing:
    def test_bracket_keys_nest_into_objects(self) -> None:
        """``a[b][c]=1`` becomes nested objects and values stay strings."""
        assert parse_query("a[b][c]=1&d=true") == {"a": {"b": {"c": "1"}}, "d": "true"}

    def test_empty_brackets_and_indexes_build_arrays(self) -> None:
        """``a[]=x`` and ``b[1]=y&b[0]=x`` both become arrays, in index order."""
        assert parse_query("a[]=x&a[]=y&b[1]=y&b[0]=x") == {"a": ["x", "y"], "b": ["x", "y"]}

    def test_repeated_plain_keys_combine_into_an_array(self) -> None:
        """``a=1&a=2`` becomes ``["1", "2"]``."""
        assert parse_query("a=1&a=2") == {"a": ["1", "2"]}

    def test_sparse_indexes_are_compacted(self) -> None:
        """``a[1]=x&a[5]=y`` becomes ``["x", "y"]`` as qs compacts sparse arrays."""
        assert parse_query("a[1]=x&a[5]=y") == {"a": ["x", "y"]}

    def test_twenty_items_stay_an_array(self) -> None:
        """A bracket array of 20 items is still an array."""
        query = "&".join(f"v[$in][]={i}" for i in range(20))
        assert parse_query(query) == {"v": {"$in": [str(i) for i in range(20)]}}

    def test_twenty_one_items_become_an_object(self) -> None:
        """A bracket array of 21 items exceeds arrayLimit and becomes an object keyed by index."""
        for form in ("v[$in][]={i}", "v[$in][{i}]={i}"):
            query = "&".join(form.format(i=i) for i in range(21))
            assert parse_query(query) == {"v": {"$in": {str(i): str(i) for i in range(21)}}}

    def test_an_index_above_twenty_becomes_an_object_key(self) -> None:
        """``a[21]=x`` is an object key, not an array of 22 slots."""
        assert parse_query("a[21]=x") == {"a": {"21": "x"}}

    def test_nesting_deeper_than_five_keeps_the_rest_as_one_key(self) -> None:
        """Only five bracket levels are expanded; the rest stays one literal key."""
        assert parse_query("a[b][c][d][e][f][g][h]=1") == {
            "a": {"b": {"c": {"d": {"e": {"f": {"[g][h]": "1"}}}}}}
        }

    def test_percent_and_plus_encoding_is_decoded(self) -> None:
        """Encoded brackets, ``+`` and UTF-8 are decoded in keys and values."""
        assert parse_query("subject%5B%24ne%5D=caf%C3%A9+au+lait") == {
            "subject": {"$ne": "café au lait"}
        }

    def test_a_scalar_then_nested_key_combines_into_an_array(self) -> None:
        """``a=x&a[b]=y`` becomes ``["x", {"b": "y"}]`` instead of failing."""
        assert parse_query("a=x&a[b]=y") == {"a": ["x", {"b": "y"}]}

    @settings(max_examples=200, deadline=None)
    @given(st.text(alphabet="ab[]=&%0129$+²٣", max_size=40))
    def test_any_query_string_parses_without_error(self, raw: str) -> None:
        """Arbitrary query strings never make the parser fail."""
        assert isinstance(parse_query(raw), dict)

    @settings(max_examples=60, deadline=None)
    @given(st.dictionaries(_keys, _nested, min_size=1, max_size=4))
    def test_encoded_queries_within_the_limits_parse_back_unchanged(
        self, query: dict[str, Any]
    ) -> None:
        """Any nested query within arrayLimit and depth parses back from its bracket encoding."""
        if _depth(query) > 5:
            return
        assert parse_query(_query_string(query)) == query


@pytest.fixture
def client(emulator: EmulatorHandle) -> httpx.Client:
    """An authenticated client for the emulator, with a small known data set in organization 27."""
    rows = [
        {
            "subject": "Call Alice",
            "activity_type": "call",
            "assigned_to_user_id": 45,
            "duration": 9,
            "done": False,
            "start_date": "2025-04-01",
            "start_time": "09:00:00",
        },
        {
            "subject": "Demo for BOB",
            "activity_type": "meeting",
            "assigned_to_user_id": 46,
            "duration": 10,
            "done": True,
            "start_date": "2025-04-01",
            "start_time": None,
        },
        {
            "subject": "call back Carol",
            "activity_type": "call",
            "assigned_to_user_id": 46,
            "duration": 30,
            "done": False,
            "start_date": "2025-04-02",
            "start_time": "08:00:00",
        },
        {
            "subject": "Write quote",
            "activity_type": "task",
            "assigned_to_user_id": None,
            "duration": None,
            "done": False,
            "start_date": "2025-04-03",
            "start_time": None,
        },
        {
            "subject": "Training",
            "activity_type": "customer_training",
            "assigned_to_user_id": 47,
            "duration": 120,
            "done": True,
            "start_date": "2025-04-01",
            "start_time": "13:00:00",
        },
    ]
    for i, row in enumerate(rows, start=1):
        emulator.state.insert_activity({"id": i, "organization_id": 27, **row})
    emulator.state.insert_activity(
        {"id": 6, "organization_id": 28, "subject": "Other org call", "activity_type": "call"}
    )
    with httpx.Client(base_url=emulator.base_url, headers=emulator.headers(), timeout=10) as c:
        yield c


def _ids(client: httpx.Client, query: str) -> list[int]:
    response = client.get(f"/activities?organization_id=27&{query}")
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["data"]]


def _error(client: httpx.Client, query: str) -> dict[str, Any]:
    response = client.get(f"/activities?{query}")
    assert response.status_code == 400, response.text
    body: dict[str, Any] = response.json()
    assert body["name"] == "BadRequest"
    return body


class TestFilters:
    def test_numbers_from_the_url_compare_as_numbers(self, client: httpx.Client) -> None:
        """``duration[$gt]=9`` keeps 10 and 30 (a string comparison would drop "10")."""
        assert _ids(client, "duration[$gt]=9&$sort[id]=1") == [2, 3, 5]

    def test_range_operators_combine_on_one_field(self, client: httpx.Client) -> None:
        """``$gte`` and ``$lte`` on ``start_date`` select an inclusive date range."""
        assert _ids(client, "start_date[$gte]=2025-04-02&start_date[$lte]=2025-04-03") == [3, 4]

    def test_booleans_are_the_strings_true_and_false(self, client: httpx.Client) -> None:
        """``done=true`` and ``done=false`` filter on the boolean field."""
        assert _ids(client, "done=true") == [2, 5]
        assert _ids(client, "done=false") == [1, 3, 4]

    def test_in_and_nin_select_by_membership(self, client: httpx.Client) -> None:
        """``$in`` and ``$nin`` lists filter by membership, never matching nulls."""
        assert _ids(client, "activity_type[$in][]=call&activity_type[$in][]=task") == [1, 3, 4]
        assert _ids(client, "assigned_to_user_id[$nin][]=46") == [1, 5]

    def test_a_plain_array_value_means_in(self, client: httpx.Client) -> None:
        """``activity_type[]=call&activity_type[]=meeting`` matches either type."""
        assert _ids(client, "activity_type[]=call&activity_type[]=meeting") == [1, 2, 3]

    def test_ne_excludes_the_value_and_nulls(self, client: httpx.Client) -> None:
        """``$ne`` excludes the value (SQL semantics: nulls never match), ``$ne=null`` means is not null."""
        assert _ids(client, "assigned_to_user_id[$ne]=46") == [1, 5]
        assert _ids(client, "assigned_to_user_id[$ne]=null") == [1, 2, 3, 5]
        assert _ids(client, "assigned_to_user_id=null") == [4]

    def test_or_matches_any_branch(self, client: httpx.Client) -> None:
        """``$or`` keeps records matching any of its branches, combined with the other filters."""
        assert _ids(
            client, "$or[0][done]=true&$or[1][assigned_to_user_id]=45&activity_type[$ne]=meeting"
        ) == [1, 5]

    def test_subject_matches_partially_and_case_insensitively(self, client: httpx.Client) -> None:
        """``subject=CALL`` matches every subject containing "call" in any case."""
        assert _ids(client, "subject=CALL") == [1, 3]

    def test_another_organizations_records_never_appear(self, client: httpx.Client) -> None:
        """A find in organization 27 never returns records of organization 28."""
        assert 6 not in _ids(client, "subject=call&$limit=100")

    def test_twenty_one_item_in_list_is_refused(self, client: httpx.Client) -> None:
        """A 21-item ``$in`` arrives as an object (qs arrayLimit) and is answered 400, not silently mis-filtered."""
        long_in = "&".join(f"id[$in][]={i}" for i in range(21))
        body = _error(client, f"organization_id=27&{long_in}")
        assert "must be an array" in body["message"]
        assert _ids(client, "&".join(f"id[$in][]={i}" for i in range(20))) == [1, 2, 3, 4, 5]

    def test_too_deep_nesting_is_refused(self, client: httpx.Client) -> None:
        """A filter nested deeper than qs expands arrives as a literal key and is refused."""
        _error(client, "organization_id=27&$or[0][$and][0][$or][0][done]=true")

    @pytest.mark.parametrize(
        ("query", "message"),
        [
            ("done=true", "organization_id is required"),
            ("organization_id=27&colour=red", "Invalid query field 'colour'"),
            ("organization_id=27&duration=long", "Invalid value for 'duration'"),
            ("organization_id=27&done=yes", "Invalid value for 'done'"),
            ("organization_id=27&start_date[$gte]=April", "Invalid value for 'start_date'"),
            ("organization_id=27&duration[$regex]=1", "Invalid query operator '$regex'"),
            ("organization_id=27&$populate=deal", "Invalid query parameter '$populate'"),
            ("organization_id=27&$sort[id]=up", "Invalid sort direction"),
            ("organization_id=27&$select[]=password", "Invalid select field 'password'"),
        ],
    )
    def test_bad_queries_are_answered_400_with_a_clear_message(
        self, client: httpx.Client, query: str, message: str
    ) -> None:
        """Each malformed query gets a BadRequest naming what is wrong."""
        assert message in _error(client, query)["message"]


class TestSortSelectPaging:
    def test_multi_key_sort_with_nulls_last_and_id_tie_break(self, client: httpx.Client) -> None:
        """``$sort`` by start_date then start_time: nulls last within a date, ties by id."""
        assert _ids(client, "$sort[start_date]=1&$sort[start_time]=1") == [1, 5, 2, 3, 4]

    def test_descending_sort_puts_nulls_first(self, client: httpx.Client) -> None:
        """A descending key orders nulls first, as PostgreSQL does."""
        assert _ids(client, "$sort[duration]=-1") == [4, 5, 3, 2, 1]

    def test_mixed_directions_sort_each_key_its_way(self, client: httpx.Client) -> None:
        """``start_date`` descending then ``subject`` ascending."""
        assert _ids(client, "$sort[start_date]=-1&$sort[subject]=1") == [4, 3, 1, 2, 5]

    def test_select_returns_only_the_fields_asked_plus_id(self, client: httpx.Client) -> None:
        """``$select[]=subject`` answers records of ``id`` and ``subject`` only."""
        data = client.get("/activities?organization_id=27&$select[]=subject&$sort[id]=1").json()[
            "data"
        ]
        assert data[0] == {"id": 1, "subject": "Call Alice"}

    def test_limit_defaults_to_ten_and_is_capped_at_the_maximum(
        self, emulator: EmulatorHandle
    ) -> None:
        """Without ``$limit`` a page holds 10; a ``$limit`` above the maximum is silently capped and reported."""
        emulator.state.seed(27, 120)
        with httpx.Client(base_url=emulator.base_url, headers=emulator.headers(), timeout=10) as c:
            default = c.get("/activities?organization_id=27").json()
            capped = c.get("/activities?organization_id=27&$limit=500").json()
        assert (default["limit"], len(default["data"]), default["total"]) == (10, 10, 120)
        assert (capped["limit"], len(capped["data"])) == (100, 100)

    def test_skip_pages_through_every_record_exactly_once(self, emulator: EmulatorHandle) -> None:
        """Paging with ``$skip`` over a sorted find returns each record once."""
        emulator.state.seed(27, 250, seed=3)
        seen: list[int] = []
        with httpx.Client(base_url=emulator.base_url, headers=emulator.headers(), timeout=10) as c:
            while True:
                page = c.get(
                    f"/activities?organization_id=27&$limit=100&$skip={len(seen)}&$sort[updated_at]=1"
                ).json()
                seen += [r["id"] for r in page["data"]]
                if not page["data"]:
                    break
        assert sorted(seen) == sorted(a["id"] for a in emulator.state.activities(27))
        assert len(seen) == 250

    def test_paginate_max_is_configurable(self, emulator_factory: Any) -> None:
        """An emulator built with ``paginate_max=25`` caps pages at 25."""
        small = emulator_factory(paginate_max=25, seed_count=40)
        with httpx.Client(base_url=small.base_url, headers=small.headers(), timeout=10) as c:
            page = c.get("/activities?organization_id=27&$limit=100").json()
        assert (page["limit"], len(page["data"]), page["total"]) == (25, 25, 40)

    def test_limit_zero_reports_only_the_total(self, client: httpx.Client) -> None:
        """``$limit=0`` answers the total with no records, as Feathers does."""
        page = client.get("/activities?organization_id=27&$limit=0").json()
        assert (page["total"], page["limit"], page["data"]) == (5, 0, [])

    def test_fast_join_respects_select_and_nulls_missing_references(
        self, client: httpx.Client
    ) -> None:
        """With fastJoinForActivityList and ``$select``, records carry the selected fields plus joins; absent references join as null."""
        data = client.get(
            "/activities?organization_id=27&id=4&$select[]=subject&fastJoinForActivityList=true"
        ).json()["data"]
        assert data == [
            {
                "id": 4,
                "subject": "Write quote",
                "created_by_user": None,
                "assigned_to_user": None,
                "deal": None,
                "contact": None,
                "company": None,
            }
        ]

    def test_url_query_overrides_the_json_body_query(self, client: httpx.Client) -> None:
        """A find may mix a JSON-body query and URL parameters; the URL wins on conflicts."""
        response = client.request(
            "GET", "/activities?done=true", json={"query": {"organization_id": 27, "done": False}}
        )
        assert [r["id"] for r in response.json()["data"]] == [2, 5]


def _robust_app() -> Any:
    state = EmulatorState()
    state.seed(27, 50)
    return create_app(state)


_ROBUST_APP = _robust_app()
_WORDS = [
    "$or",
    "$and",
    "0",
    "1",
    "",
    "$in",
    "$nin",
    "$ne",
    "$gt",
    "$lte",
    "$sort",
    "$select",
    "$limit",
    "$skip",
    "done",
    "duration",
    "subject",
    "start_date",
    "start_time",
    "updated_at",
    "location_geocoded",
    "id",
    "organization_id",
    "fastJoinForActivityList",
    "x",
]
_VALUES = [
    "1",
    "-1",
    "true",
    "false",
    "null",
    "2025-04-01",
    "2025-04-01T10:00:00.000Z",
    "abc",
    "",
    "²",
    "10:00",
    "1.5",
]


async def _asgi_get(path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=_ROBUST_APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as http:
        return await http.get(path, headers={"Authorization": "Bearer demo-token-john-46"})


_operations = st.lists(
    st.tuples(
        st.sampled_from(["create", "patch", "bulk", "delete", "raw"]),
        st.integers(min_value=0, max_value=10_000),
    ),
    max_size=40,
)


def _rows(min_size: int) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(
        st.fixed_dictionaries(
            {
                "a": st.none() | st.integers(min_value=0, max_value=6),
                "b": st.none() | st.sampled_from(["", "x", "y", "Z", "é"]),
                "c": st.booleans(),
            }
        ),
        min_size=min_size,
        max_size=120,
    ).map(lambda rows: [{**row, "id": 1000 - 7 * i} for i, row in enumerate(rows)])


_sorts = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "id"]), st.sampled_from([1, -1])),
    max_size=3,
    unique_by=lambda pair: pair[0],
)


class TestFirstPage:
    @settings(max_examples=200, deadline=None)
    @given(_rows(0), _sorts, st.integers(min_value=0, max_value=40))
    def test_first_equals_the_head_of_the_full_order(
        self, rows: list[dict[str, Any]], sort: list[tuple[str, int]], count: int
    ) -> None:
        """The page found with a heap is exactly the head of the full ordering, nulls and ties included."""
        assert first(rows, sort, count) == order(rows, sort)[:count]

    @settings(max_examples=300, deadline=None)
    @given(_rows(40), _sorts, st.integers(min_value=1, max_value=10))
    def test_small_pages_of_many_rows_equal_the_full_order(
        self, rows: list[dict[str, Any]], sort: list[tuple[str, int]], count: int
    ) -> None:
        """A page much smaller than the matches (the heap path) is the head of the full ordering."""
        assert first(rows, sort, count) == order(rows, sort)[:count]


class TestRobustness:
    @settings(max_examples=80, deadline=None)
    @given(st.text(alphabet="adiotnsu_[]=&%0129$+-.²", max_size=60))
    def test_no_query_string_makes_the_service_fail(self, raw: str) -> None:
        """Arbitrary query strings on find are answered 200 or 400, never a server error."""
        response = asyncio.run(_asgi_get(f"/activities?organization_id=27&{raw}"))
        assert response.status_code in (200, 400), response.text

    @settings(max_examples=120, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.lists(st.sampled_from(_WORDS), min_size=1, max_size=4), st.sampled_from(_VALUES)
            ),
            max_size=6,
        )
    )
    def test_no_combination_of_query_words_makes_the_service_fail(
        self, pairs: list[tuple[list[str], str]]
    ) -> None:
        """Queries built from the service's own vocabulary are answered 200 or 400, never a server error."""
        raw = "&".join(
            parts[0] + "".join(f"[{p}]" for p in parts[1:]) + "=" + quote(value)
            for parts, value in pairs
        )
        response = asyncio.run(_asgi_get(f"/activities?organization_id=27&{raw}"))
        assert response.status_code in (200, 400), response.text


class TestFeedIndex:
    @settings(max_examples=15, deadline=None)
    @given(_operations, st.integers(min_value=0, max_value=400))
    def test_feed_queries_match_a_full_scan_after_any_writes(
        self, operations: list[tuple[str, int]], cut: int
    ) -> None:
        """``updated_at`` range finds answer exactly what a scan and sort of every live record gives, whatever writes came before."""
        from apexcal.emulator.query import compile_find, order
        from apexcal.emulator.records import ACTIVITY_SCHEMA

        state = EmulatorState()
        state.seed(27, 300, seed=5)
        state.find_activities(
            compile_find(
                ACTIVITY_SCHEMA,
                {"organization_id": 27, "updated_at": {"$gte": "2000-01-01"}},
                paginate_default=10,
                paginate_max=100,
            )
        )
        for op, n in operations:
            ids = [a["id"] for a in state.activities(27)]
            target = ids[n % len(ids)]
            if op == "create":
                state.create_activity(
                    {"organization_id": 27, "subject": "new", "activity_type": "call"}, user_id=46
                )
            elif op == "patch":
                state.patch_activity(target, {"done": True})
            elif op == "bulk":
                state.bulk_patch(ids[n % 7 :: 9], {"done": False}, organizations=frozenset({27}))
            elif op == "delete":
                state.delete_activity(target)
            else:
                state.put_raw(target, updated_at=state.get(ids[(n * 7) % len(ids)])["updated_at"])
        stamps = sorted(a["updated_at"] for a in state.activities(27))
        bound = stamps[min(cut, len(stamps) - 1)]
        live = sorted(state.activities(27), key=lambda a: (a["updated_at"], a["id"]))
        cursor = live[min(cut, len(live) - 1)]
        keyset = {
            "organization_id": 27,
            "updated_at": {"$gte": stamps[0]},
            "$or": [
                {"updated_at": {"$gt": cursor["updated_at"]}},
                {"updated_at": cursor["updated_at"], "id": {"$gt": cursor["id"]}},
            ],
            "$sort": {"updated_at": 1, "id": 1},
            "$limit": 100,
        }
        total, page = state.find_activities(
            compile_find(ACTIVITY_SCHEMA, keyset, paginate_default=10, paginate_max=100)
        )
        after = live[min(cut, len(live) - 1) + 1 :]
        assert total == len(after)
        assert [r["id"] for r in page] == [r["id"] for r in after[:100]]
        for op in ("$gte", "$gt"):
            for sort in ({"updated_at": 1, "id": 1}, {"updated_at": 1}, {"start_date": -1}):
                query = {
                    "organization_id": 27,
                    "updated_at": {op: bound},
                    "$sort": sort,
                    "$limit": 100,
                    "$skip": 3,
                }
                total, page = state.find_activities(
                    compile_find(ACTIVITY_SCHEMA, query, paginate_default=10, paginate_max=100)
                )
                expected = order(
                    [
                        a
                        for a in state.activities(27)
                        if (a["updated_at"] >= bound if op == "$gte" else a["updated_at"] > bound)
                    ],
                    tuple(sort.items()),
                )
                assert total == len(expected)
                assert [r["id"] for r in page] == [r["id"] for r in expected[3:103]]
