"""Parsing API records: a bad optional field is dropped, a bad id or timestamp rejects the record."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from apexcal.apex.models import parse_activity, parse_activity_type
from apexcal.errors import InvalidRecord

ACTIVITY: dict[str, Any] = {
    "id": 101,
    "organization_id": 27,
    "subject": "Quarterly review",
    "activity_type": "meeting",
    "location": "Client Office",
    "location_geocoded": {"lat": 40.7, "lng": -74.0, "address": "New York, NY"},
    "start_date": "2025-06-12",
    "start_time": "10:00:00",
    "end_date": "2025-06-12",
    "end_time": "11:00:00",
    "duration": 60,
    "deal": {"id": 7, "name": "Acme renewal"},
    "created_at": "2025-05-01T08:00:00.000Z",
    "updated_at": "2025-06-01T09:30:15.391Z",
    "deleted_at": None,
    "done": False,
}

TYPE: dict[str, Any] = {
    "id": 1,
    "organization_id": 27,
    "name": "Meeting",
    "color": "#3B82F6",
    "icon_key": "users",
    "created_at": "2024-01-01T00:00:00.000Z",
    "updated_at": "2024-01-01T00:00:00.000Z",
}


class TestOptionalFields:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("location_geocoded", {"lat": 95, "lng": 10}),
            ("deal", {"name": "no id"}),
            ("subject", 12345),
            ("note", ["a", "list"]),
            ("assigned_to_user", "not an object"),
        ],
    )
    def test_bad_optional_field_is_nulled_and_logged(self, field: str, value: object) -> None:
        """One malformed optional field becomes null with an apex.field_dropped warning; the rest is kept."""
        with capture_logs() as logs:
            activity = parse_activity({**ACTIVITY, field: value})
        assert getattr(activity, field) is None
        assert activity.subject == ("Quarterly review" if field != "subject" else None)
        assert activity.location == "Client Office"
        (event,) = [e for e in logs if e["event"] == "apex.field_dropped"]
        assert event["log_level"] == "warning"
        assert (event["kind"], event["id"], event["field"]) == ("activity", 101, field)
        assert event["reason"]

    def test_several_bad_fields_are_each_logged(self) -> None:
        """Every malformed optional field is nulled and logged once."""
        with capture_logs() as logs:
            activity = parse_activity({**ACTIVITY, "subject": 1, "location": {}, "deal": {"id": "x"}})
        assert (activity.subject, activity.location, activity.deal) == (None, None, None)
        assert sorted(e["field"] for e in logs if e["event"] == "apex.field_dropped") == [
            "deal",
            "location",
            "subject",
        ]

    def test_good_record_logs_nothing(self) -> None:
        """A valid record parses without warnings."""
        with capture_logs() as logs:
            parse_activity(ACTIVITY)
        assert logs == []

    def test_bad_optional_type_field_is_nulled(self) -> None:
        """An activity type with a malformed colour keeps its name and id."""
        with capture_logs() as logs:
            activity_type = parse_activity_type({**TYPE, "color": 42})
        assert (activity_type.id, activity_type.name, activity_type.color) == (1, "Meeting", None)
        assert [e["field"] for e in logs if e["event"] == "apex.field_dropped"] == ["color"]


class TestStrictFields:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("id", "abc"),
            ("id", -1),
            ("organization_id", None),
            ("created_at", "yesterday"),
            ("updated_at", "2025-06-01T09:30:15"),
            ("deleted_at", "soon"),
            ("duration", -5),
            ("start_date", "2026-13-45"),
            ("start_time", "25:99"),
            ("end_date", "the day after"),
            ("end_time", "noon"),
            ("assigned_to_user_id", "abc"),
            ("created_by_user_id", [46]),
            ("deal_id", {"id": 1}),
            ("activity_type", 42),
            ("done", "maybe"),
        ],
    )
    def test_bad_strict_field_rejects_the_record(self, field: str, value: object) -> None:
        """A malformed id, organization, timestamp or field deciding whether or when is InvalidRecord naming the field.

        Nulling such a field would move the activity out of a target's filter
        or make it unmappable, and its calendar object would be deleted.
        """
        with pytest.raises(InvalidRecord) as info:
            parse_activity({**ACTIVITY, field: value, "duration": -1})
        assert field in info.value.reason
        assert info.value.kind == "activity"

    def test_missing_updated_at_rejects_the_record(self) -> None:
        """A record without updated_at cannot be ordered or versioned: it is invalid."""
        raw = {k: v for k, v in ACTIVITY.items() if k != "updated_at"}
        with pytest.raises(InvalidRecord, match="updated_at"):
            parse_activity(raw)

    def test_type_without_a_valid_name_is_invalid(self) -> None:
        """An activity type needs a name: a numeric one cannot be dropped."""
        with pytest.raises(InvalidRecord, match="name") as info:
            parse_activity_type({**TYPE, "name": 5})
        assert info.value.record_id == 1

    def test_non_mapping_is_invalid(self) -> None:
        """A record that is not an object is invalid."""
        with pytest.raises(InvalidRecord):
            parse_activity([1, 2, 3])
