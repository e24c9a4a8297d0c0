"""The people directory against the emulator over real HTTP: one read per new person, never one per activity."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apexcal.apex.client import ApexClient
from apexcal.apex.people import MAX_FAILED, PeopleEmails
from tests.contract.test_client import make_client
from tests.fixtures.emulator import EmulatorHandle


@pytest.fixture
def client(emulator: EmulatorHandle) -> Iterator[ApexClient]:
    emulator.admin.clear_faults()
    emulator.admin.reset_counters()
    with make_client(emulator) as api:
        yield api


def _reads(emulator: EmulatorHandle) -> int:
    return int(emulator.admin.counters()["by_route"].get("GET /activities/:id", 0))


class TestPeopleEmails:
    def test_emails_filled_with_one_read_per_person(self, emulator: EmulatorHandle, client: ApexClient) -> None:
        """40 activities of 2 users and 3 contacts (one without an email) cost at most 5 reads, then none."""
        state, org = emulator.state, emulator.org_id
        contacts = [
            state.add_contact(organization_id=org, full_name="Alex Johnson", email="alex@acme.example"),
            state.add_contact(organization_id=org, full_name="Bo Li", email="bo@li.example"),
            state.add_contact(organization_id=org, full_name="No Mail", email=None),
        ]
        users = [45, 46]
        for i in range(40):
            state.create_activity(
                {
                    "organization_id": org, "subject": f"Call {i}", "activity_type": "call",
                    "assigned_to_user_id": users[i % 2], "contact_id": contacts[i % 3],
                    "start_date": "2026-01-05", "start_time": "10:00:00", "done": False,
                },
                user_id=46,
            )
        listed = list(client.list_activities(fastJoinForActivityList=True))
        assert listed
        assert all(a.contact is None or a.contact.email is None for a in listed)
        emulator.admin.reset_counters()
        people = PeopleEmails()
        filled = {a.id: a for a in people.fill(listed, client.get_activity)}
        assert 1 <= _reads(emulator) <= len(users) + len(contacts)
        assert _reads(emulator) == people.requests
        for a in filled.values():
            if a.contact_id == contacts[0]:
                assert a.contact is not None
                assert a.contact.email == "alex@acme.example"
            if a.contact_id == contacts[2]:
                assert a.contact is None or a.contact.email is None
            if a.assigned_to_user_id in users:
                want = state.users[a.assigned_to_user_id]["email"]
                assert a.assigned_to_user is not None
                assert a.assigned_to_user.email == want
        before = _reads(emulator)
        people.fill(listed, client.get_activity)
        assert _reads(emulator) == before  # known people cost nothing, the one without email included

    def test_entries_expire(self, emulator: EmulatorHandle, client: ApexClient) -> None:
        now = [0.0]
        people = PeopleEmails(max_age=60.0, clock=lambda: now[0])
        emulator.state.create_activity(
            {"organization_id": emulator.org_id, "subject": "Call", "assigned_to_user_id": 46,
             "start_date": "2026-01-05", "done": False},
            user_id=46,
        )
        listed = list(client.list_activities(fastJoinForActivityList=True, assigned_to_user_id=46))[:1]
        assert listed
        people.fill(listed, client.get_activity)
        first = people.requests
        assert first == 1
        now[0] = 59.0
        people.fill(listed, client.get_activity)
        assert people.requests == first
        now[0] = 61.0
        people.fill(listed, client.get_activity)
        assert people.requests == first + 1

    def test_a_read_failing_for_its_record_leaves_the_person_unknown_and_is_retried(
        self, emulator: EmulatorHandle, client: ApexClient
    ) -> None:
        """A 500 on one activity's read: that activity keeps its names only, the next call reads it again."""
        org = emulator.org_id
        contact = emulator.state.add_contact(organization_id=org, full_name="Cleo", email="cleo@example.org")
        emulator.state.create_activity(
            {"organization_id": org, "subject": "Call", "assigned_to_user_id": 46, "contact_id": contact,
             "start_date": "2026-01-05", "done": False},
            user_id=46,
        )
        listed = list(client.list_activities(fastJoinForActivityList=True, contact_id=contact))
        assert len(listed) == 1
        people = PeopleEmails()
        emulator.admin.fault("status", count=1, status=500, method="GET", path=f"/activities/{listed[0].id}")
        (first,) = people.fill(listed, client.get_activity)
        assert first.contact is None or first.contact.email is None
        (second,) = people.fill(listed, client.get_activity)
        assert second.contact is not None
        assert second.contact.email == "cleo@example.org"
        assert people.requests == 2

    def test_a_broken_api_is_not_read_on_and_on(self, emulator: EmulatorHandle, client: ApexClient) -> None:
        """Every read failing: MAX_FAILED reads in one call, not one per activity."""
        org = emulator.org_id
        for i in range(12):
            contact = emulator.state.add_contact(organization_id=org, full_name=f"P{i}", email=f"p{i}@example.org")
            emulator.state.create_activity(
                {"organization_id": org, "subject": "Call", "assigned_to_user_id": 46, "contact_id": contact,
                 "start_date": "2026-01-05", "done": False},
                user_id=46,
            )
        listed = list(client.list_activities(fastJoinForActivityList=True))
        emulator.admin.fault("status", count=100, status=404, method="GET", path="/activities/")
        people = PeopleEmails()
        people.fill(listed, client.get_activity)
        assert people.requests == MAX_FAILED
