"""The sync engine against real Radicale and Xandikos servers, with the emulator as the API."""

from __future__ import annotations

import httpx
import pytest
from structlog.testing import capture_logs

from apexcal.ical.mapping import parse_uid
from apexcal.ical.remote import read_remote
from tests.integration.test_sync_support import (
    Harness,
    completed_like,
    harness,
    new_activity,
    new_task,
)

__all__ = ["harness"]


class TestInitialSync:
    """The first cycle of a target."""

    @pytest.mark.slow
    def test_initial_sync_writes_exactly_the_matching_objects(self, harness: Harness) -> None:
        """200 activities: the objects of those matching the filter, each parsing, all with our UIDs."""
        harness.emulator.state.seed(harness.emulator.org_id, 200, seed=5)
        harness.add_target("a", filter={"assigned_to_user_id": 46})
        summary = harness.cycle("a")
        want = harness.expected("a")
        assert 10 < len(want) < 200
        assert summary.ok
        assert summary.created == len(want)
        objects = harness.remote("a")
        assert len(objects) == len(want)
        for obj in objects.values():
            remote = read_remote(obj.href, obj.data)
            assert parse_uid(remote.uid) is not None
        harness.assert_converged("a")

    def test_no_change_cycle_costs_one_caldav_request(self, harness: Harness) -> None:
        """A cycle after a converged one sends 1 CalDAV request (the PROPFIND), ≤ 3 API requests and no write.

        Its PROPFIND reads the collection's sync token, equal to the stored
        one: no sync-collection REPORT.  A change another client makes right
        after is still seen by the next cycle.
        """
        task = new_task(harness.emulator)
        for _ in range(4):
            new_activity(harness.emulator)
        harness.add_target("a")
        harness.cycle("a")
        harness.cycle("a")
        summary = harness.cycle("a")
        assert (summary.created, summary.updated, summary.deleted) == (0, 0, 0)
        assert harness.requests == [("PROPFIND", 207)]
        assert len(harness.api_requests) <= 3, harness.api_requests
        obj = harness.object_of("a", task)
        harness.put_raw("a", obj.href, completed_like(obj.data, "thunderbird"), obj.etag)
        seen = harness.cycle("a")
        assert seen.written_back == 1
        assert harness.emulator.state.get(task)["done"] is True
        assert harness.count("REPORT") >= 1
        echo = harness.cycle("a")  # reads back the echo of the PUT the writeback cycle made
        assert (echo.created, echo.updated, echo.deleted, echo.written_back) == (0, 0, 0, 0)
        harness.cycle("a")
        assert harness.requests == [("PROPFIND", 207)]
        harness.assert_converged("a")

    def test_echo_of_the_first_cycle_is_no_disguised_full_listing(self, harness: Harness) -> None:
        """The cycle after the initial one reads back its own writes without a warning.

        The sync-collection answer then names every object (all of them were
        written since the token), which is also what DAViCal's plain 207 for an
        unknown token looks like; only an answer that hid deletions is one.
        """
        for _ in range(3):
            new_activity(harness.emulator)
        harness.add_target("a")
        harness.cycle("a")
        with capture_logs() as logs:
            summary = harness.cycle("a")
        assert (summary.created, summary.updated, summary.deleted) == (0, 0, 0)
        assert not [e for e in logs if e["log_level"] in ("warning", "error")]

    def test_missing_calendar_is_created_when_asked(self, harness: Harness) -> None:
        """A target with ``create = true`` on a URL that does not exist gets its calendar."""
        new_activity(harness.emulator)
        url = harness.server.make_calendar_url("new")
        harness.add_target("a", url=url, create=True)
        summary = harness.cycle("a")
        assert summary.created == 1
        harness.assert_converged("a")


class TestCrmChanges:
    """Changes in the CRM reach the calendar, and nothing else is written."""

    def test_updating_one_activity_makes_exactly_one_put(self, harness: Harness) -> None:
        """One changed activity among many costs one PUT."""
        ids = [new_activity(harness.emulator, subject=f"Meeting {i}") for i in range(12)]
        harness.add_target("a")
        harness.cycle("a")
        harness.emulator.state.patch_activity(ids[3], {"subject": "Moved to Friday"})
        summary = harness.cycle("a")
        assert summary.updated == 1
        assert harness.count("PUT") == 1
        assert b"Moved to Friday" in harness.object_of("a", ids[3]).data
        harness.assert_converged("a")

    def test_soft_deleted_activity_is_removed_after_the_reconcile(self, harness: Harness) -> None:
        """An activity deleted in the CRM disappears from the calendar once the sweep runs."""
        harness.sync = {"reconcile_interval": "0s"}
        ids = [new_activity(harness.emulator) for _ in range(4)]
        harness.add_target("a")
        harness.cycle("a")
        harness.emulator.state.delete_activity(ids[1])
        summary = harness.cycle("a")
        assert summary.deleted == 1
        assert harness.count("DELETE") == 1
        with pytest.raises(KeyError):
            harness.object_of("a", ids[1])
        harness.assert_converged("a")

    def test_reassigned_activity_moves_between_targets(self, harness: Harness) -> None:
        """Reassigning an activity deletes it from one user's calendar and creates it in the other's."""
        moving = new_activity(harness.emulator, assigned_to_user_id=46)
        new_activity(harness.emulator, assigned_to_user_id=45)
        harness.add_target("john", filter={"assigned_to_user_id": 46})
        harness.add_target("jane", filter={"assigned_to_user_id": 45})
        harness.cycle("john")
        harness.cycle("jane")
        harness.emulator.state.patch_activity(moving, {"assigned_to_user_id": 45})
        john = harness.cycle("john")
        jane = harness.cycle("jane")
        assert (john.deleted, jane.created) == (1, 1)
        assert harness.remote("john") == {}
        assert len(harness.remote("jane")) == 2
        harness.assert_converged("john")
        harness.assert_converged("jane")

    def test_mass_delete_is_refused_without_force(self, harness: Harness) -> None:
        """A filter change that would empty a calendar stops the cycle unless forced."""
        from apexcal.errors import MassDeleteRefused

        for _ in range(12):
            new_activity(harness.emulator)
        harness.add_target("a")
        harness.cycle("a")
        harness.targets["a"]["filter"] = {"assigned_to_user_id": 47}
        with pytest.raises(MassDeleteRefused):
            harness.cycle("a")
        assert len(harness.remote("a")) == 12
        summary = harness.cycle("a", force=True)
        assert summary.deleted == 12
        assert harness.remote("a") == {}

    def test_foreign_objects_are_never_touched(self, harness: Harness) -> None:
        """An object with a UID that is not ours survives every cycle, even a full listing."""
        new_activity(harness.emulator)
        harness.add_target("a")
        harness.cycle("a")
        foreign = (
            b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//other//EN\r\nBEGIN:VEVENT\r\n"
            b"UID:someone-else-1@example.org\r\nDTSTAMP:20260101T000000Z\r\n"
            b"DTSTART:20260102T100000Z\r\nDTEND:20260102T103000Z\r\nSUMMARY:Dentist\r\n"
            b"END:VEVENT\r\nEND:VCALENDAR\r\n"
        )
        with harness.sink("a") as sink:
            href = sink.href_for("dentist.ics")
        assert harness.put_raw("a", href, foreign).status_code in (201, 204)
        harness.store.set_sync_token("a", None)
        harness.cycle("a")
        assert href in harness.remote("a")
        assert harness.count("PUT") == 0
        assert harness.count("DELETE") == 0


class TestCalendarCapabilities:
    """What the calendar can hold and what the mapping may add."""

    def test_calendar_without_vtodo_gets_tasks_as_events(self, harness: Harness) -> None:
        """A calendar whose component set lacks VTODO receives tasks as events, with a warning."""
        from tests.integration.test_sync_support import new_task

        task = new_task(harness.emulator)
        url = harness.server.make_calendar_url("events-only")
        body = (
            b'<?xml version="1.0" encoding="utf-8"?>'
            b'<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
            b'<C:supported-calendar-component-set><C:comp name="VEVENT"/></C:supported-calendar-component-set>'
            b"</D:prop></D:set></C:mkcalendar>"
        )
        made = httpx.request(
            "MKCALENDAR", url, content=body, auth=harness.server.auth,
            headers={"Content-Type": "application/xml; charset=utf-8"}, timeout=10,
        )
        assert made.status_code == 201
        harness.add_target("a", url=url)
        summary = harness.cycle("a")
        assert summary.ok
        assert summary.warnings
        assert read_remote("", harness.object_of("a", task).data).kind == "VEVENT"

    def test_physical_location_is_geocoded_offline_before_mapping(self, harness: Harness) -> None:
        """An activity at "Client Office, Austin, TX" without coordinates gets GEO from the offline gazetteer."""
        activity = new_activity(harness.emulator, location="Client Office, Austin, TX", location_geocoded=None)
        online = new_activity(harness.emulator, location="Online - Zoom", location_geocoded=None)
        harness.add_target("a")
        harness.mapping = {"geocoder": "offline"}
        harness.cycle("a")
        assert b"GEO:30." in harness.object_of("a", activity).data
        assert b"GEO:" not in harness.object_of("a", online).data
        harness.cycle("a")
        assert harness.count("PUT") == 0


class TestIsolation:
    """A target's cycle never runs twice at once."""

    def test_cycle_of_a_busy_target_is_refused(self, harness: Harness) -> None:
        """While another worker holds the target's lock, a cycle is refused and writes nothing."""
        from apexcal.state import TargetBusy

        new_activity(harness.emulator)
        harness.add_target("a")
        with harness.store.target_lock("a"), pytest.raises(TargetBusy):
            harness.cycle("a")
        assert harness.remote("a") == {}
        assert harness.store.target_state("a").consecutive_failures == 0


class TestAdoption:
    """Objects already on the server with our UIDs are taken over, not duplicated or rewritten."""

    def test_lost_state_adopts_every_object_without_a_write(self, harness: Harness) -> None:
        """After the target's records are lost, a cycle adopts what the server holds: no PUT, no duplicate."""
        harness.emulator.state.seed(harness.emulator.org_id, 25, seed=11)
        harness.add_target("a")
        first = harness.cycle("a")
        harness.store.forget_target("a")
        summary = harness.cycle("a")
        assert summary.adopted == first.created
        assert harness.count("PUT") == 0
        harness.assert_converged("a")
        harness.cycle("a")
        assert harness.count("PUT") == 0
