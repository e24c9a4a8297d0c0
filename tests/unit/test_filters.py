"""Local filter matching agrees with the API's query semantics."""

from __future__ import annotations

from typing import Any

import pytest

from apexcal.apex.models import parse_activity
from apexcal.filters import matches

BASE: dict[str, Any] = {
    "id": 1,
    "organization_id": 27,
    "assigned_to_user_id": 46,
    "subject": "Sales Follow-up Call",
    "start_date": "2025-04-15",
    "activity_type": "call",
    "done": False,
    "created_at": "2025-03-28T09:30:15.391Z",
    "updated_at": "2025-03-28T09:30:15.391Z",
}


class TestMatches:
    @pytest.mark.parametrize(
        ("filter_", "expected"),
        [
            ({}, True),
            ({"assigned_to_user_id": 46}, True),
            ({"assigned_to_user_id": 45}, False),
            ({"activity_type": ["call", "meeting"]}, True),
            ({"activity_type": ["task"]}, False),
            ({"done": False}, True),
            ({"done": True}, False),
            ({"subject": "follow-UP"}, True),
            ({"subject": "demo"}, False),
            ({"start_date": {"$gte": "2025-04-01", "$lte": "2025-04-30"}}, True),
            ({"start_date": {"$gte": "2025-04-16"}}, False),
            ({"start_date": {"$lt": "2025-04-15"}}, False),
            ({"activity_type": {"$nin": ["call"]}}, False),
            ({"assigned_to_user_id": {"$ne": 45}}, True),
            ({"assigned_to_user_id": 46, "done": True}, False),
        ],
    )
    def test_filter_table(self, filter_: dict[str, Any], expected: bool) -> None:
        """Each documented filter form selects exactly the activities the API would."""
        assert matches(parse_activity(BASE), filter_) is expected

    def test_missing_start_date_never_matches_a_range(self) -> None:
        """An activity without a start date is outside every date range."""
        activity = parse_activity({**BASE, "start_date": None})
        assert not matches(activity, {"start_date": {"$gte": "2000-01-01"}})
