"""Builders for activities and activity types used by the iCalendar tests."""

from __future__ import annotations

from typing import Any

from apexcal.apex.models import Activity, ActivityType, parse_activity, parse_activity_type

ORG = 27


def activity(**fields: Any) -> Activity:
    """An activity with sensible defaults, overridden by ``fields`` (API field names)."""
    raw: dict[str, Any] = {
        "id": 101,
        "organization_id": ORG,
        "subject": "Quarterly review",
        "activity_type": "meeting",
        "start_date": "2025-06-12",
        "start_time": "10:00:00",
        "end_date": "2025-06-12",
        "end_time": "11:00:00",
        "created_at": "2025-05-01T08:00:00.000Z",
        "updated_at": "2025-06-01T09:30:15.391Z",
        "done": False,
    }
    raw.update(fields)
    return parse_activity(raw)


def activity_type(name: str, color: str | None = "#3B82F6", icon_key: str | None = "users", type_id: int = 1) -> ActivityType:
    """An activity type of the test organization."""
    return parse_activity_type(
        {
            "id": type_id,
            "organization_id": ORG,
            "name": name,
            "color": color,
            "icon_key": icon_key,
            "created_at": "2024-01-01T00:00:00.000Z",
            "updated_at": "2024-01-01T00:00:00.000Z",
        }
    )


TYPES = {
    t.key: t
    for t in (
        activity_type("Meeting", "#3B82F6", "users", 1),
        activity_type("Call", "#10B981", "phone", 2),
        activity_type("Task", "#F59E0B", "check", 3),
        activity_type("Customer Training", "#8B5CF6", "school", 4),
    )
}
