"""Writes on the emulator: auth, validation, updated_at stamps, soft delete, bulk patch, types."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from tests.fixtures.emulator import EmulatorHandle

BODY = {
    "organization_id": 27,
    "subject": "Call",
    "activity_type": "call",
    "start_date": "2025-05-01",
}
ERROR_KEYS = ["name", "message", "code", "className"]


@pytest.fixture
def client(emulator: EmulatorHandle) -> httpx.Client:
    """An authenticated client of user 46 (organization 27)."""
    with httpx.Client(base_url=emulator.base_url, headers=emulator.headers(), timeout=10) as c:
        yield c


def _create(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = client.post("/activities", json={**BODY, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _assert_error(response: httpx.Response, status: int, name: str, class_name: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ERROR_KEYS
    assert (body["name"], body["code"], body["className"]) == (name, status, class_name)
    message: str = body["message"]
    return message


class TestAuthentication:
    @pytest.mark.parametrize(
        "headers",
        [{}, {"Authorization": "Bearer nope-not-a-token"}, {"Authorization": "Basic abc"}],
    )
    def test_missing_or_unknown_tokens_get_not_authenticated(
        self, emulator: EmulatorHandle, headers: dict[str, str]
    ) -> None:
        """No token, an unknown token or another scheme answers 401 NotAuthenticated on every service."""
        for path in (
            "/activities?organization_id=27",
            "/activities/1",
            "/activity-types?organization_id=27",
        ):
            response = emulator.admin.http.get(emulator.base_url + path, headers=headers)
            _assert_error(response, 401, "NotAuthenticated", "not-authenticated")

    def test_another_organization_is_forbidden(
        self, emulator: EmulatorHandle, client: httpx.Client
    ) -> None:
        """Finding, reading, creating and changing records of an organization the user is not in answers 403."""
        other = emulator.state.insert_activity(
            {"organization_id": 28, "subject": "Theirs", "activity_type": "call"}
        )
        for response in (
            client.get("/activities?organization_id=28"),
            client.get(f"/activities/{other['id']}"),
            client.patch(f"/activities/{other['id']}", json={"done": True}),
            client.delete(f"/activities/{other['id']}"),
            client.post("/activities", json={**BODY, "organization_id": 28}),
            client.get("/activity-types?organization_id=28"),
            client.get("/activity-types/6"),
        ):
            _assert_error(response, 403, "Forbidden", "forbidden")
        assert emulator.state.get(other["id"])["done"] is False

    def test_created_by_user_comes_from_the_token(self, client: httpx.Client) -> None:
        """created_by_user_id is the token's user, whatever the body says."""
        assert _create(client, created_by_user_id=45)["created_by_user_id"] == 46


class TestValidation:
    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"duration": "30"}, "'duration' must be an integer"),
            ({"done": "yes"}, "'done' must be true or false"),
            ({"start_date": "01/05/2025"}, "'start_date' must be a date"),
            ({"start_time": "25:00:00"}, "'start_time' must be a time"),
            ({"subject": 5}, "'subject' must be a string"),
            ({"location_geocoded": {"lat": 100, "lng": 0}}, "'location_geocoded' must be"),
            ({"colour": "red"}, "Unknown field 'colour'"),
            ({"activity_type": "séance"}, "Unknown activity_type 'séance'"),
            ({"end_date": "2025-04-30"}, "'end_date' must not be before 'start_date'"),
            ({"organization_id": None}, "organization_id is required"),
            ({"subject": ""}, "'subject' is required"),
        ],
    )
    def test_bad_bodies_on_create_are_answered_400(
        self, client: httpx.Client, fields: dict[str, Any], message: str
    ) -> None:
        """Each wrongly typed or inconsistent create body gets a BadRequest naming the field."""
        response = client.post("/activities", json={**BODY, **fields})
        assert message in _assert_error(response, 400, "BadRequest", "bad-request")

    def test_bad_patch_changes_nothing(
        self, emulator: EmulatorHandle, client: httpx.Client
    ) -> None:
        """A refused patch leaves the record and its updated_at as they were."""
        created = _create(client, start_time="10:00:00", end_date="2025-05-01", end_time="11:00:00")
        response = client.patch(f"/activities/{created['id']}", json={"end_time": "09:00:00"})
        _assert_error(response, 400, "BadRequest", "bad-request")
        assert emulator.state.get(created["id"]) == created

    def test_invalid_json_is_a_bad_request(self, client: httpx.Client) -> None:
        """A body that is not JSON answers 400."""
        response = client.post(
            "/activities", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        _assert_error(response, 400, "BadRequest", "bad-request")

    def test_unknown_routes_and_methods_answer_feathers_errors(self, client: httpx.Client) -> None:
        """An unknown path is 404 NotFound and an unsupported method 405 MethodNotAllowed."""
        _assert_error(client.get("/deals"), 404, "NotFound", "not-found")
        _assert_error(
            client.put("/activities/1", json={}), 405, "MethodNotAllowed", "method-not-allowed"
        )
        assert (
            _assert_error(client.get("/activities/%C2%B2"), 404, "NotFound", "not-found")
            == "No record found for id '²'"
        )


_FIELDS = [
    "organization_id",
    "subject",
    "activity_type",
    "start_date",
    "start_time",
    "end_date",
    "end_time",
    "duration",
    "done",
    "location_geocoded",
    "deal_id",
    "note",
    "id",
    "created_at",
    "colour",
]
_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        ["", "call", "2025-05-01", "2025-02-30", "10:00", "10:00:00", "24:00:00", "27", "x" * 300]
    ),
    st.fixed_dictionaries(
        {
            "lat": st.floats(allow_nan=False, allow_infinity=False),
            "lng": st.floats(allow_nan=False, allow_infinity=False),
        }
    ),
    st.lists(st.integers(), max_size=2),
)


class TestRobustness:
    @settings(
        max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(st.dictionaries(st.sampled_from(_FIELDS), _ANY, max_size=8))
    def test_no_create_or_patch_body_makes_the_service_fail(
        self, client: httpx.Client, body: dict[str, Any]
    ) -> None:
        """Any JSON body on create, patch or bulk patch is answered as a success or a 400, never a server error."""
        created = client.post("/activities", json={**BODY, **body})
        assert created.status_code in (201, 400, 403), created.text
        assert client.patch("/activities/1", json=body).status_code in (200, 400, 404)
        assert client.patch("/activities", json={"ids": [1], **body}).status_code in (200, 400)

    def test_non_finite_coordinates_are_refused(self, client: httpx.Client) -> None:
        """A geocode with NaN (which Python's JSON parser accepts) answers 400 rather than storing it."""
        body = json.dumps(BODY)[:-1] + ', "location_geocoded": {"lat": NaN, "lng": 0}}'
        response = client.post(
            "/activities", content=body.encode(), headers={"Content-Type": "application/json"}
        )
        _assert_error(response, 400, "BadRequest", "bad-request")


class TestUpdatedAt:
    def test_every_write_gets_a_later_stamp(self, client: httpx.Client) -> None:
        """Rapid creates, patches and deletes never share an updated_at and always move it forward."""
        stamps = []
        for i in range(15):
            created = _create(client, subject=f"Call {i}")
            patched = client.patch(f"/activities/{created['id']}", json={"done": True}).json()
            deleted = client.delete(f"/activities/{created['id']}").json()
            stamps += [created["updated_at"], patched["updated_at"], deleted["updated_at"]]
        assert stamps == sorted(stamps)
        assert len(set(stamps)) == len(stamps)
        assert all(len(s) == 24 and s.endswith("Z") for s in stamps)

    def test_bulk_patch_stamps_every_row_alike(
        self, emulator: EmulatorHandle, client: httpx.Client
    ) -> None:
        """All rows of one bulk patch share one updated_at, later than any earlier write."""
        ids = [_create(client, subject=f"Call {i}")["id"] for i in range(5)]
        before = max(emulator.state.get(i)["updated_at"] for i in ids)
        assert client.patch("/activities", json={"ids": ids, "done": True}).json() == {
            "updated": 5,
            "ids": ids,
        }
        stamps = {emulator.state.get(i)["updated_at"] for i in ids}
        assert len(stamps) == 1
        assert stamps.pop() > before


class TestSoftDelete:
    def test_deleted_activity_is_hidden_but_kept(
        self, emulator: EmulatorHandle, client: httpx.Client
    ) -> None:
        """After delete, find omits the record, get/patch/delete answer 404, and the record stays stored."""
        kept, gone = _create(client, subject="Kept"), _create(client, subject="Gone")
        assert client.delete(f"/activities/{gone['id']}").status_code == 200
        found = client.get("/activities?organization_id=27&$limit=100").json()
        assert [r["id"] for r in found["data"]] == [kept["id"]]
        assert found["total"] == 1
        for response in (
            client.get(f"/activities/{gone['id']}"),
            client.patch(f"/activities/{gone['id']}", json={"done": True}),
            client.delete(f"/activities/{gone['id']}"),
        ):
            assert (
                _assert_error(response, 404, "NotFound", "not-found")
                == f"No record found for id '{gone['id']}'"
            )
        assert emulator.state.get(gone["id"])["deleted_at"] is not None
        assert [a["id"] for a in emulator.state.activities(27)] == [kept["id"]]


class TestBulkPatch:
    def test_unknown_and_deleted_ids_are_skipped(
        self, emulator: EmulatorHandle, client: httpx.Client
    ) -> None:
        """Only live activities are changed and listed; unknown and deleted ids are skipped."""
        mine, deleted = _create(client)["id"], _create(client)["id"]
        client.delete(f"/activities/{deleted}")
        response = client.patch(
            "/activities", json={"ids": [mine, 99999, deleted, mine], "done": True}
        )
        assert response.json() == {"updated": 1, "ids": [mine]}
        assert emulator.state.get(deleted)["done"] is False

    def test_foreign_id_is_forbidden_and_changes_nothing(
        self, emulator: EmulatorHandle, client: httpx.Client
    ) -> None:
        """An id of another organization answers 403 Forbidden and no row, not even the caller's, changes."""
        mine = _create(client)["id"]
        foreign = emulator.state.insert_activity(
            {"organization_id": 28, "subject": "x", "activity_type": "call"}
        )["id"]
        before = emulator.state.get(mine)["updated_at"]
        response = client.patch("/activities", json={"ids": [mine, foreign], "done": True})
        assert (
            _assert_error(response, 403, "Forbidden", "forbidden")
            == "You are not authorized to access organization 28"
        )
        assert emulator.state.get(foreign)["done"] is False
        assert emulator.state.get(mine)["done"] is False
        assert emulator.state.get(mine)["updated_at"] == before

    @pytest.mark.parametrize(
        "body",
        [
            {"done": True},
            {"ids": [], "done": True},
            {"ids": ["1"], "done": True},
            {"ids": [1]},
            {"ids": [1], "done": "yes"},
            {"ids": [1], "organization_id": 28},
        ],
    )
    def test_malformed_bulk_bodies_are_refused(
        self, client: httpx.Client, body: dict[str, Any]
    ) -> None:
        """A bulk patch without usable ids or fields answers 400."""
        _assert_error(client.patch("/activities", json=body), 400, "BadRequest", "bad-request")


class TestActivityTypes:
    def test_name_matches_partially_on_find(self, client: httpx.Client) -> None:
        """``name=TRAIN`` finds "Customer Training"."""
        data = client.get("/activity-types?organization_id=27&name=TRAIN").json()["data"]
        assert [t["name"] for t in data] == ["Customer Training"]

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"name": "call"}, "already exists"),
            ({"name": "Visit", "color": "blue"}, "'color' must be a hex colour"),
            ({"name": "Visit", "icon_key": "rocket"}, "Unknown icon_key"),
            ({"color": "#FFFFFF"}, "'name' is required"),
        ],
    )
    def test_bad_type_bodies_are_refused(
        self, client: httpx.Client, body: dict[str, Any], message: str
    ) -> None:
        """Duplicate keys, bad colours, unknown icons and missing names answer 400."""
        response = client.post("/activity-types", json={"organization_id": 27, **body})
        assert message in _assert_error(response, 400, "BadRequest", "bad-request")

    def test_a_deleted_type_is_not_available_for_new_activities(self, client: httpx.Client) -> None:
        """After deleting "Email", creating an activity of type email answers 400 but old ones keep the key."""
        old = _create(client, activity_type="email")
        assert client.delete("/activity-types/2").status_code == 200
        response = client.post("/activities", json={**BODY, "activity_type": "email"})
        _assert_error(response, 400, "BadRequest", "bad-request")
        assert client.get(f"/activities/{old['id']}").json()["activity_type"] == "email"


class TestClientDisconnect:
    def test_client_leaving_mid_body_is_logged_at_debug_not_as_an_error(
        self, emulator: EmulatorHandle
    ) -> None:
        """A client that closes the connection before sending its whole body is a debug line, not a 500."""
        url = httpx.URL(emulator.base_url)
        with capture_logs() as logs:
            with socket.create_connection((url.host, url.port), timeout=5) as sock:
                sock.sendall(
                    b"POST /activities HTTP/1.1\r\n"
                    b"Host: 127.0.0.1\r\n"
                    + f"Authorization: Bearer {emulator.token}\r\n".encode()
                    + b"Content-Type: application/json\r\n"
                    b"Content-Length: 1000\r\n\r\n"
                    b'{"subject": '
                )
            deadline = time.monotonic() + 5
            while not [e for e in logs if e["event"].startswith("emulator.")]:
                assert time.monotonic() < deadline, "the emulator logged nothing about the request"
                time.sleep(0.01)  # polling a condition with a deadline
        events = [(e["event"], e["log_level"]) for e in logs if e["event"].startswith("emulator.")]
        assert events == [("emulator.client_disconnected", "debug")]
