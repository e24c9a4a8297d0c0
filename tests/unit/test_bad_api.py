"""Malformed API records through the real parsing path: reported with id and field, never a crash, never a silent null that moves an activity."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from apexcal.apex.client import ApexClient
from apexcal.apex.models import DROPPABLE_FIELDS, Activity, parse_activity
from apexcal.errors import InvalidRecord
from tests.unit.test_bad_remote import World

ORG = 27
ACTIVITY: dict[str, Any] = {
    "id": 101,
    "organization_id": ORG,
    "created_by_user_id": 46,
    "assigned_to_user_id": 46,
    "subject": "Quarterly review",
    "note": "Bring the numbers",
    "public_description": "Review",
    "activity_type": "meeting",
    "location": "Client Office",
    "location_geocoded": {"lat": 40.7, "lng": -74.0, "address": "New York, NY"},
    "start_date": "2025-06-12",
    "start_time": "10:00:00",
    "end_date": "2025-06-12",
    "end_time": "11:00:00",
    "duration": 60,
    "deal_id": 7,
    "contact_id": 8,
    "company_id": 9,
    "deal": {"id": 7, "name": "Acme renewal"},
    "contact": {"id": 8, "full_name": "Ann Lee"},
    "company": {"id": 9, "name": "Acme"},
    "created_by_user": {"id": 46, "full_name": "John Doe"},
    "assigned_to_user": {"id": 46, "full_name": "John Doe"},
    "created_at": "2025-05-01T08:00:00.000Z",
    "updated_at": "2025-06-01T09:30:15.391Z",
    "deleted_at": None,
    "done": False,
}

_BAD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["2026-13-45", "25:99:00", "2025-06-01T09:30:15", "yesterday", "101", "-1", "", "null"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.sampled_from(["id", "lat", "lng", "name"]), st.one_of(st.none(), st.integers(), st.text(max_size=5)), max_size=3),
)


def _valid_alone(field: str, value: object) -> bool:
    """Whether ``value`` is a valid value of ``field`` (the rest of the record being valid)."""
    try:
        Activity.model_validate({**ACTIVITY, field: value})
    except Exception:
        return False
    return True


class TestParseActivity:
    """``parse_activity`` on records with random bad values in random fields."""

    @settings(max_examples=150, deadline=None)
    @given(mutations=st.dictionaries(st.sampled_from(sorted(ACTIVITY)), _BAD_VALUES, min_size=1, max_size=6))
    def test_bad_values_are_rejected_or_dropped_never_invented(self, mutations: dict[str, Any]) -> None:
        """A record parses, with only droppable fields nulled, or is InvalidRecord naming a bad field and the id."""
        raw = {**ACTIVITY, **mutations}
        try:
            activity = parse_activity(raw)
        except InvalidRecord as exc:
            error = exc
        else:
            error = None
        if error is not None:
            assert (error.kind, error.record_id) == ("activity", raw["id"])
            assert any(f in error.reason for f in mutations), (error.reason, mutations)
            return
        for field, value in mutations.items():
            if field in DROPPABLE_FIELDS:
                continue
            # Any field that decides whether or when keeps exactly what the API sent.
            assert _valid_alone(field, value), (field, value)
            assert getattr(activity, field) == getattr(Activity.model_validate({**ACTIVITY, field: value}), field)

    def test_every_field_null_is_a_report_naming_the_fields(self) -> None:
        """A record of nulls only is InvalidRecord naming id, organization and timestamps."""
        with pytest.raises(InvalidRecord) as info:
            parse_activity(dict.fromkeys(ACTIVITY))
        for field in ("id", "organization_id", "created_at", "updated_at"):
            assert field in info.value.reason

    def test_string_id_is_a_report_not_a_coercion(self) -> None:
        """``"101"`` is not an id: the record is reported (strict ids), not taken as another activity."""
        with pytest.raises(InvalidRecord, match="id") as info:
            parse_activity({**ACTIVITY, "id": "101"})
        assert info.value.record_id == "101"

    def test_huge_subject_is_kept_for_the_mapping_to_bound(self) -> None:
        """A 1 MB subject is a valid string: it parses (the mapping bounds what reaches a calendar)."""
        assert parse_activity({**ACTIVITY, "subject": "x" * 1_000_000}).subject == "x" * 1_000_000


# --- the client over pages the API should never send --------------------------------


def _page(data: list[Any], total: int) -> dict[str, Any]:
    return {"total": total, "limit": 100, "skip": 0, "data": data}


def _record(activity_id: object, stamp: str, **fields: Any) -> dict[str, Any]:
    return {**ACTIVITY, "id": activity_id, "updated_at": stamp, **fields}


class _Pages:
    """An API transport serving fixed pages of ``/activities`` in order (a fake at the transport only)."""

    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self._pages: Iterator[dict[str, Any]] = iter(pages)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        page = next(self._pages, _page([], 0))
        return httpx.Response(200, content=json.dumps(page).encode(), headers={"Content-Type": "application/json"})


def _client(pages: list[dict[str, Any]]) -> ApexClient:
    return ApexClient("http://api.invalid", "token", ORG, transport=httpx.MockTransport(_Pages(pages)))


class TestClientListings:
    """Listings holding malformed records: the rest arrives, each bad one is one report."""

    def test_change_feed_skips_bad_records_and_keeps_the_rest(self) -> None:
        """String ids, nulls everywhere, another organization's record and a bad date are each reported; the good ones arrive."""
        t = "2025-06-01T09:30:15.%03dZ"
        first = [
            _record(1, t % 1),
            _record("2", t % 2),
            dict.fromkeys(ACTIVITY),
            _record(3, t % 3, start_date="2026-13-45"),
        ]
        second = [_record(4, t % 4, organization_id=28), _record(5, t % 5, subject="x" * 1_000_000)]
        with capture_logs() as logs, _client([_page(first, 6), _page(second, 2)]) as client:
            got = list(client.changes_since(None, overlap=timedelta(0)))
        assert [a.id for a in got] == [1, 5]
        reports = [e for e in logs if e["event"] == "apex.invalid_record"]
        assert [r["id"] for r in reports] == ["2", None, 3, 4]
        assert "start_date" in reports[2]["reason"]
        assert "organization" in reports[3]["reason"]
        assert client.skipped_records == 4

    def test_duplicate_ids_across_pages_arrive_as_served(self) -> None:
        """The same id on two pages is yielded twice (the mirror keeps the last); nothing else is lost."""
        t = "2025-06-01T09:30:15.%03dZ"
        first = [_record(1, t % 1), _record(2, t % 2)]
        second = [_record(2, t % 3, subject="Later"), _record(3, t % 4)]
        with _client([_page(first, 4), _page(second, 2)]) as client:
            got = list(client.changes_since(None, overlap=timedelta(0)))
        assert [a.id for a in got] == [1, 2, 2, 3]
        assert got[2].subject == "Later"

    def test_id_sweep_counts_a_numeric_string_id_as_present(self) -> None:
        """The deletion sweep must not take ``"2"`` for a vanished activity 2: unparseable is not deleted."""
        page = _page([{"id": 1}, {"id": "2"}, {"id": None}, {"id": 3}], 4)
        with _client([page]) as client:
            assert client.all_activity_ids() == {1, 2, 3}


class TestHugeStrings:
    """Megabyte strings from the CRM make objects of bounded size (a server's size limit must never refuse one)."""

    @pytest.mark.parametrize(
        "fields",
        [
            {"subject": "s" * 1_000_000},
            {"location": "Room " + "l" * 1_000_000},
            {"deal": {"id": 7, "name": "d" * 1_000_000}, "contact": {"id": 8, "full_name": "c" * 1_000_000}},
            {"note": "n" * 1_000_000, "public_description": "p" * 1_000_000},
        ],
        ids=["subject", "location", "names", "notes"],
    )
    def test_object_stays_small_and_says_it_was_cut(self, fields: dict[str, Any]) -> None:
        """Each huge field is cut, with the truncation marker, and the whole object stays under 200 KB."""
        from apexcal.ical.mapping import MappingOptions, object_for
        from apexcal.ical.text import TRUNCATION_MARKER

        obj = object_for(parse_activity({**ACTIVITY, **fields}), {}, MappingOptions(summary_template="{subject} {deal}"))
        assert len(obj.data) < 200_000
        unfolded = obj.data.replace(b"\r\n ", b"").decode()
        assert TRUNCATION_MARKER in unfolded

    def test_unknown_activity_type_maps_with_its_key(self) -> None:
        """An activity of a type the organization does not have is mapped, its key as category, no colour."""
        from apexcal.ical.mapping import MappingOptions, object_for

        data = object_for(parse_activity({**ACTIVITY, "activity_type": "no_such_type"}), {}, MappingOptions()).data
        assert b"CATEGORIES:no_such_type" in data
        assert b"COLOR:" not in data


class TestPagingPastBadIds:
    """A page whose every id is a numeric string still moves the keyset cursor: the listing is not stuck."""

    def test_sweep_pages_past_a_page_of_string_ids(self) -> None:
        """``"1"``, ``"2"`` then ``3``: the sweep finds all three instead of failing the cycle."""
        pages = [_page([{"id": "1"}, {"id": "2"}], 3), _page([{"id": 3}], 1), _page([], 0)]
        with _client(pages) as client:
            assert client.all_activity_ids() == {1, 2, 3}

    def test_change_feed_pages_past_a_page_of_string_ids(self) -> None:
        """Records with string ids are reported; the feed goes on to the next page."""
        t = "2025-06-01T09:30:15.%03dZ"
        pages = [_page([_record("1", t % 1), _record("2", t % 2)], 3), _page([_record(3, t % 3)], 1)]
        with capture_logs() as logs, _client(pages) as client:
            got = list(client.changes_since(None, overlap=timedelta(0)))
        assert [a.id for a in got] == [3]
        assert [e["id"] for e in logs if e["event"] == "apex.invalid_record"] == ["1", "2"]


_FIELDS_TURNING_BAD = sorted(set(ACTIVITY) - {"id", "organization_id", "created_at", "updated_at", "deleted_at"})
_JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["2026-13-45", "25:99:00", "abc", "", "46", "task"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["id", "name"]), st.one_of(st.none(), st.integers(), st.text(max_size=4)), max_size=2),
)


class TestCycleOverRecordsTurnedBad:
    """A real cycle (emulator app, real client, memory calendar) after random fields of one activity turned bad."""

    @settings(max_examples=12, deadline=None)
    @given(victim=st.integers(0, 3), mutations=st.dictionaries(st.sampled_from(_FIELDS_TURNING_BAD), _JSON_VALUES, min_size=1, max_size=4))
    def test_no_object_is_lost_and_the_other_change_syncs(self, victim: int, mutations: dict[str, Any]) -> None:
        """The activity turned bad keeps or updates its object (never loses it to a null); another activity's change is written."""
        with capture_logs():
            w = World()
            try:
                before = w.objects()
                victim_id, other_id = w.ids[victim], w.ids[(victim + 1) % 4]
                w.state.put_raw(victim_id, **mutations, updated_at=w.state.stamp())
                w.state.patch_activity(other_id, {"subject": "Changed in the CRM"})
                summary = w.cycle()
                after = w.objects()
            finally:
                w.close()
        assert summary.ok, summary.errors
        assert b"SUMMARY:Changed in the CRM" in after[next(h for h in after if f"-{other_id}@".encode() in after[h].data)].data
        lost = set(before) - set(after)
        if lost:
            # Only a valid change may take an object away: out of the target or hidden, never a dropped field.
            raw = {**w.state.get(victim_id)}
            activity = parse_activity({**raw, "organization_id": ORG})
            assert all(getattr(activity, f) is not None or mutations[f] is None for f in mutations if f not in DROPPABLE_FIELDS)
