"""The emulator reproduces every example request and response of both API documents."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from apexcal.apex.models import parse_timestamp
from tests.fixtures.emulator import EmulatorHandle

JANE = "demo-token-jane-45"

# The two records of the "List Activities" example.
ACTIVITY_123: dict[str, Any] = {
    "id": 123,
    "organization_id": 27,
    "created_by_user_id": 45,
    "assigned_to_user_id": 46,
    "subject": "Sales Follow-up Call",
    "note": "Discuss new product features and pricing",
    "public_description": "Brief call to discuss product updates",
    "location": "Online - Zoom",
    "location_geocoded": {"lat": 37.7749, "lng": -122.4194, "address": "San Francisco, CA"},
    "start_date": "2025-04-15",
    "start_time": "14:30:00",
    "end_date": "2025-04-15",
    "end_time": "15:00:00",
    "duration": 30,
    "deal_id": 789,
    "contact_id": 456,
    "company_id": 345,
    "activity_type": "call",
    "done": False,
    "created_at": "2025-03-28T09:30:15.391Z",
    "updated_at": "2025-03-28T09:30:15.391Z",
    "deleted_at": None,
}
ACTIVITY_124: dict[str, Any] = {
    "id": 124,
    "organization_id": 27,
    "created_by_user_id": 45,
    "assigned_to_user_id": 46,
    "subject": "Product Demo",
    "note": "Show premium features to potential client",
    "public_description": "Product demonstration",
    "location": "Client Office",
    "location_geocoded": {"lat": 40.7128, "lng": -74.0060, "address": "New York, NY"},
    "start_date": "2025-04-16",
    "start_time": "10:00:00",
    "end_date": "2025-04-16",
    "end_time": "11:30:00",
    "duration": 90,
    "deal_id": 790,
    "contact_id": 457,
    "company_id": 346,
    "activity_type": "meeting",
    "done": False,
    "created_at": "2025-03-28T15:45:20.817Z",
    "updated_at": "2025-03-28T15:45:20.817Z",
    "deleted_at": None,
}
# The lighter joined objects of the "Activity Object" example (list with fastJoinForActivityList).
FAST_JOINS = {
    "created_by_user": {"id": 45, "full_name": "Jane Smith"},
    "assigned_to_user": {"id": 46, "full_name": "John Doe"},
    "deal": {"id": 789, "name": "Enterprise Solution"},
    "contact": {"id": 456, "full_name": "Alex Johnson"},
    "company": {"id": 345, "name": "Acme Corp"},
}
# The full joined objects of the "Get an Activity" example.
FULL_JOINS = {
    "created_by_user": {"id": 45, "full_name": "Jane Smith", "email": "jane.smith@example.com"},
    "assigned_to_user": {"id": 46, "full_name": "John Doe", "email": "john.doe@example.com"},
    "deal": {"id": 789, "name": "Enterprise Solution", "stage": "Proposal"},
    "contact": {"id": 456, "full_name": "Alex Johnson", "email": "alex.johnson@acmecorp.com"},
    "company": {"id": 345, "name": "Acme Corp", "website": "https://acmecorp.com"},
}
CREATE_BODY = {
    "organization_id": 27,
    "assigned_to_user_id": 46,
    "subject": "Onboarding Call",
    "note": "Initial onboarding for new client",
    "public_description": "Welcome to our service",
    "location": "Zoom Meeting",
    "start_date": "2025-05-01",
    "start_time": "10:00:00",
    "end_date": "2025-05-01",
    "end_time": "10:30:00",
    "duration": 30,
    "deal_id": 791,
    "contact_id": 458,
    "activity_type": "call",
    "done": False,
}
CREATED = {
    **CREATE_BODY,
    "created_by_user_id": 45,
    "location_geocoded": None,
    "company_id": None,
}
TYPES = [
    {
        "id": 1,
        "name": "Call",
        "color": "#10B981",
        "icon_key": "phone",
        "organization_id": 27,
        "created_at": "2025-03-01T10:00:00.000Z",
        "updated_at": "2025-03-01T10:00:00.000Z",
        "deleted_at": None,
    },
    {
        "id": 2,
        "name": "Email",
        "color": "#3B82F6",
        "icon_key": "mail",
        "organization_id": 27,
        "created_at": "2025-03-01T10:00:00.000Z",
        "updated_at": "2025-03-01T10:00:00.000Z",
        "deleted_at": None,
    },
    {
        "id": 3,
        "name": "Meeting",
        "color": "#F59E0B",
        "icon_key": "users",
        "organization_id": 27,
        "created_at": "2025-03-01T10:00:00.000Z",
        "updated_at": "2025-03-01T10:00:00.000Z",
        "deleted_at": None,
    },
    {
        "id": 4,
        "name": "Task",
        "color": "#EC4899",
        "icon_key": "check-square",
        "organization_id": 27,
        "created_at": "2025-03-01T10:00:00.000Z",
        "updated_at": "2025-03-01T10:00:00.000Z",
        "deleted_at": None,
    },
    {
        "id": 5,
        "name": "Customer Training",
        "color": "#4F46E5",
        "icon_key": "graduation-cap",
        "organization_id": 27,
        "created_at": "2025-03-10T14:22:17.562Z",
        "updated_at": "2025-03-10T14:22:17.562Z",
        "deleted_at": None,
    },
]
TIMESTAMPS = ("id", "created_at", "updated_at", "deleted_at")


@pytest.fixture
def documented(emulator: EmulatorHandle) -> EmulatorHandle:
    """The emulator holding the records the documents' examples refer to."""
    state = emulator.state
    state.add_deal(id=789, organization_id=27, name="Enterprise Solution", stage="Proposal")
    state.add_contact(
        id=456, organization_id=27, full_name="Alex Johnson", email="alex.johnson@acmecorp.com"
    )
    state.add_company(id=345, organization_id=27, name="Acme Corp", website="https://acmecorp.com")
    state.insert_activity(ACTIVITY_123)
    state.insert_activity(ACTIVITY_124)
    return emulator


def _client(emulator: EmulatorHandle, token: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=emulator.base_url, headers=emulator.headers(token), timeout=10)


def _without(record: dict[str, Any], keys: tuple[str, ...] = TIMESTAMPS) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in keys}


class TestActivitiesDocument:
    def test_list_example_with_json_body_query_returns_the_documented_page(
        self, documented: EmulatorHandle
    ) -> None:
        """The curl list example (query as a JSON body on GET) answers exactly the documented envelope."""
        query = {
            "organization_id": 27,
            "$limit": 10,
            "$skip": 0,
            "$sort": {"start_date": 1, "start_time": 1},
            "assigned_to_user_id": 46,
            "done": False,
        }
        with _client(documented) as client:
            response = client.request("GET", "/activities", json={"query": query})
        assert response.status_code == 200
        assert response.json() == {
            "total": 2,
            "limit": 10,
            "skip": 0,
            "data": [ACTIVITY_123, ACTIVITY_124],
        }

    def test_list_with_fast_join_adds_the_lighter_joined_objects(
        self, documented: EmulatorHandle
    ) -> None:
        """fastJoinForActivityList=true gives each record the joined objects of the Activity Object example."""
        with _client(documented) as client:
            response = client.get(
                "/activities",
                params={"organization_id": 27, "id": 123, "fastJoinForActivityList": "true"},
            )
        assert response.json()["data"] == [{**ACTIVITY_123, **FAST_JOINS}]

    def test_get_example_returns_the_record_with_full_joined_objects(
        self, documented: EmulatorHandle
    ) -> None:
        """GET /activities/123 answers exactly the documented record with users' emails, deal stage and company website."""
        with _client(documented) as client:
            response = client.get("/activities/123")
        assert response.status_code == 200
        assert response.json() == {**ACTIVITY_123, **FULL_JOINS}

    def test_create_update_done_delete_examples_follow_the_documented_shapes(
        self, documented: EmulatorHandle
    ) -> None:
        """The create, update, mark-done and delete examples answer the documented records in sequence."""
        with _client(documented, JANE) as client:
            created = client.post("/activities", json=CREATE_BODY)
            assert created.status_code == 201
            body = created.json()
            assert list(body) == list(ACTIVITY_123)
            assert _without(body) == CREATED
            assert body["deleted_at"] is None
            assert body["created_at"] == body["updated_at"]
            new_id = body["id"]

            updated = client.patch(
                f"/activities/{new_id}",
                json={
                    "subject": "Onboarding and Product Overview Call",
                    "duration": 45,
                    "end_time": "10:45:00",
                },
            )
            expected = {
                **CREATED,
                "subject": "Onboarding and Product Overview Call",
                "duration": 45,
                "end_time": "10:45:00",
            }
            assert _without(updated.json()) == expected
            assert updated.json()["created_at"] == body["created_at"]
            assert updated.json()["updated_at"] > body["updated_at"]

            done = client.patch(f"/activities/{new_id}", json={"done": True})
            assert _without(done.json()) == {**expected, "done": True}

            deleted = client.delete(f"/activities/{new_id}")
            record = deleted.json()
            assert _without(record) == {**expected, "done": True}
            assert record["deleted_at"] == record["updated_at"] > done.json()["updated_at"]
            parse_timestamp(record["deleted_at"])

    def test_bulk_mark_as_done_example_answers_updated_and_ids(
        self, documented: EmulatorHandle
    ) -> None:
        """PATCH /activities with ids [123, 124] and done answers {"updated": 2, "ids": [123, 124]}."""
        with _client(documented) as client:
            response = client.patch("/activities", json={"ids": [123, 124], "done": True})
        assert response.json() == {"updated": 2, "ids": [123, 124]}
        assert documented.state.get(123)["done"]
        assert documented.state.get(124)["done"]

    def test_not_found_example_is_the_documented_error_body(
        self, documented: EmulatorHandle
    ) -> None:
        """GET /activities/999 answers exactly the documented NotFound error."""
        with _client(documented) as client:
            response = client.get("/activities/999")
        assert response.status_code == 404
        assert response.json() == {
            "name": "NotFound",
            "message": "No record found for id '999'",
            "code": 404,
            "className": "not-found",
        }


class TestActivityTypesDocument:
    def test_list_example_returns_the_five_documented_types(self, emulator: EmulatorHandle) -> None:
        """The curl list example answers the five documented types, sorted by name as requested."""
        query = {"organization_id": 27, "$limit": 10, "$skip": 0, "$sort": {"name": 1}}
        with _client(emulator) as client:
            body = client.request("GET", "/activity-types", json={"query": query}).json()
        assert (body["total"], body["limit"], body["skip"]) == (5, 10, 0)
        assert [t["name"] for t in body["data"]] == sorted(t["name"] for t in TYPES)
        assert sorted(body["data"], key=lambda t: t["id"]) == TYPES

    def test_get_example_counts_live_activities_of_the_type_key(
        self, emulator: EmulatorHandle
    ) -> None:
        """GET /activity-types/5 answers the documented type with activities_count of live customer_training activities."""
        for i in range(13):
            emulator.state.insert_activity(
                {
                    "organization_id": 27,
                    "subject": f"Training {i}",
                    "activity_type": "customer_training",
                }
            )
        emulator.state.insert_activity(
            {"organization_id": 27, "subject": "Call", "activity_type": "call"}
        )
        emulator.state.delete_activity(1)
        with _client(emulator) as client:
            response = client.get("/activity-types/5")
        assert response.json() == {**TYPES[4], "activities_count": 12}

    def test_create_update_delete_examples_follow_the_documented_shapes(
        self, emulator: EmulatorHandle
    ) -> None:
        """The create, update and delete examples of a type answer the documented records."""
        with _client(emulator) as client:
            created = client.post(
                "/activity-types",
                json={
                    "organization_id": 27,
                    "name": "Site Visit",
                    "color": "#8B5CF6",
                    "icon_key": "map-pin",
                },
            )
            assert created.status_code == 201
            body = created.json()
            assert list(body) == list(TYPES[0])
            assert _without(body) == {
                "name": "Site Visit",
                "color": "#8B5CF6",
                "icon_key": "map-pin",
                "organization_id": 27,
            }
            patched = client.patch(
                f"/activity-types/{body['id']}",
                json={"name": "Client Site Visit", "color": "#7C3AED"},
            ).json()
            assert _without(patched) == {
                "name": "Client Site Visit",
                "color": "#7C3AED",
                "icon_key": "map-pin",
                "organization_id": 27,
            }
            assert patched["updated_at"] > patched["created_at"] == body["created_at"]
            deleted = client.delete(f"/activity-types/{body['id']}").json()
            assert deleted["deleted_at"] == deleted["updated_at"] > patched["updated_at"]
            assert client.get(f"/activity-types/{body['id']}").status_code == 404

    def test_not_found_example_is_the_documented_error_body(self, emulator: EmulatorHandle) -> None:
        """GET /activity-types/999 answers exactly the documented NotFound error."""
        with _client(emulator) as client:
            response = client.get("/activity-types/999")
        assert response.json() == {
            "name": "NotFound",
            "message": "No record found for id '999'",
            "code": 404,
            "className": "not-found",
        }
