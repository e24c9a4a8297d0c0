"""Filtered feed views: parsing ``--filter`` arguments, the stored canonical text, matching, naming."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apexcal.apex.models import Activity, ActivityType
from apexcal.feeds.views import (
    FeedFilter,
    FilterSyntaxError,
    UnknownType,
    parse_canonical,
    parse_filter,
    resolve_types,
    split_view_name,
    view_id,
    view_name,
    view_path,
)

type_keys = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
filters = st.builds(
    FeedFilter,
    types=st.none() | st.frozensets(type_keys, min_size=1, max_size=4),
    users=st.none() | st.frozensets(st.integers(1, 10**9), min_size=1, max_size=4),
    done=st.none() | st.frozensets(st.booleans(), min_size=1),
)


def _activity(**fields: object) -> Activity:
    stamp = "2026-01-01T00:00:00.000Z"
    base: dict[str, object] = {
        "id": 1, "organization_id": 27, "subject": "x", "start_date": date(2026, 1, 5),
        "created_at": stamp, "updated_at": stamp,
    }
    return Activity.model_validate(base | fields)


def _type(id_: int, name: str) -> ActivityType:
    stamp = "2026-01-01T00:00:00.000Z"
    return ActivityType.model_validate(
        {"id": id_, "organization_id": 27, "name": name, "created_at": stamp, "updated_at": stamp}
    )


class TestParse:
    @given(filters)
    def test_canonical_text_parses_back_to_the_same_filter(self, f: FeedFilter) -> None:
        """parse(canonical(f)) == f, and the canonical text of that is the same text."""
        text = f.canonical()
        assert parse_canonical(text) == f
        assert parse_canonical(text).canonical() == text

    @given(filters, st.randoms())
    def test_argument_order_and_repeated_values_do_not_change_the_canonical_text(
        self, f: FeedFilter, rnd: object
    ) -> None:
        """Keys in any order, values shuffled and repeated: one canonical text, one view id."""
        arguments = []
        for part in f.canonical().split():
            key, _, values = part.partition("=")
            listed = values.split(",")
            listed = listed + listed[:1]
            rnd.shuffle(listed)  # type: ignore[attr-defined]
            arguments.append(f"{key.upper()}={','.join(listed)}")
        rnd.shuffle(arguments)  # type: ignore[attr-defined]
        again = parse_filter(arguments)
        assert again.canonical() == f.canonical()
        assert view_id(again.canonical()) == view_id(f.canonical())

    def test_example_from_the_command_line(self) -> None:
        """`--filter type=call,meeting --filter user=46` is calls and meetings of user 46."""
        f = parse_filter(["type=meeting,call", "user=46"])
        assert f == FeedFilter(types=frozenset({"call", "meeting"}), users=frozenset({46}))
        assert f.canonical() == "type=call,meeting user=46"

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            (["colour=red"], "unknown key 'colour'"),
            (["type"], "is not KEY=VALUE"),
            (["user=abc"], "'abc' is not a user id"),
            (["user=0"], "'0' is not a user id"),
            (["user=-4"], "'-4' is not a user id"),
            (["user=4,,5"], "an empty value for 'user'"),
            (["done=perhaps"], "'perhaps' is not true or false"),
            (["user=1", "user=2"], "'user' given twice"),
            (["type=a=b"], "bad value 'a=b'"),
        ],
    )
    def test_bad_arguments_name_the_bad_part(self, arguments: list[str], message: str) -> None:
        """Each malformed argument raises naming what is wrong."""
        with pytest.raises(FilterSyntaxError, match=message):
            parse_filter(arguments)


class TestResolveTypes:
    TYPES = (_type(3, "Call"), _type(4, "Meeting"), _type(9, "Customer Training"))

    def test_keys_names_and_ids_resolve_to_keys(self) -> None:
        """A type value may be the key, the name in any case, or the type's id."""
        f = resolve_types(parse_filter(["type=CALL,4,customer training"]), self.TYPES)
        assert f.types == frozenset({"call", "meeting", "customer_training"})

    def test_an_unknown_type_is_named_with_the_known_ones(self) -> None:
        """A value naming no type raises naming it and listing the known types."""
        with pytest.raises(UnknownType, match=r"unknown activity type 'lunch'.*call \(Call, id 3\)"):
            resolve_types(parse_filter(["type=call,lunch"]), self.TYPES)


class TestMatches:
    def test_and_across_keys_or_within_a_key(self) -> None:
        """An activity matches when each given key has one of its values."""
        f = parse_filter(["type=call,meeting", "user=46"])
        assert f.matches(_activity(activity_type="call", assigned_to_user_id=46))
        assert f.matches(_activity(activity_type="meeting", assigned_to_user_id=46))
        assert not f.matches(_activity(activity_type="task", assigned_to_user_id=46))
        assert not f.matches(_activity(activity_type="call", assigned_to_user_id=47))
        assert not f.matches(_activity(activity_type="call"))

    def test_done(self) -> None:
        """done=false keeps open activities only."""
        f = parse_filter(["done=false"])
        assert f.matches(_activity(done=False))
        assert not f.matches(_activity(done=True))


class TestNaming:
    @given(filters, filters)
    def test_distinct_filters_get_distinct_views(self, a: FeedFilter, b: FeedFilter) -> None:
        """Two filters share a view (and so a body and ETag) only when their canonical texts are equal."""
        same = a.canonical() == b.canonical()
        assert (view_name("team", a.canonical()) == view_name("team", b.canonical())) == same

    def test_view_names_and_files(self) -> None:
        """A view's name splits back into its output; its file sits beside the output's file."""
        name = view_name("team-46", "user=46")
        assert split_view_name(name) == ("team-46", view_id("user=46"))
        assert split_view_name("team-46") is None
        path = view_path(Path("/feeds/team-46.ics"), "abc")
        assert path == Path("/feeds/team-46.view-abc.ics")
