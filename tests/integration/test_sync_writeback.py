"""Completion writeback: tasks ticked in a calendar app reach the CRM, once, without ping-pong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import caldav
import pytest

from apexcal.ical.remote import read_remote
from tests.integration.test_sync_support import (
    Harness,
    completed_like,
    harness,
    new_activity,
    new_task,
    reopened_like,
)

__all__ = ["harness"]


def client_put(h: Harness, href: str, data: bytes, etag: str) -> None:
    """Write ``data`` at ``href`` with the python-caldav library, as a calendar app's sync would."""
    entry = h.targets["a"]
    with h.sink("a") as sink:
        url = sink.url_for(href)
    with caldav.DAVClient(
        url=entry["url"], username=entry.get("username"), password=entry.get("password")
    ) as client:
        response = client.put(
            url, data.decode(), {"Content-Type": "text/calendar; charset=utf-8", "If-Match": etag}
        )
    assert response.status in (200, 201, 204), response.status


def patches(h: Harness) -> list[str]:
    """The bulk PATCH requests the emulator received."""
    return [line for line in h.emulator.admin.requests() if line.startswith("PATCH /activities")]


class TestCompletionWriteback:
    """A to-do completed or reopened in a calendar app flips ``done`` in the CRM."""

    @pytest.mark.parametrize("client", ["tasks.org", "thunderbird", "percent"])
    def test_completed_todo_marks_activity_done(self, harness: Harness, client: str) -> None:
        """Ticked done (tasks.org, Thunderbird or PERCENT-COMPLETE:100 only) → done in the CRM after one cycle, via the bulk endpoint."""
        task = new_task(harness.emulator)
        new_activity(harness.emulator)
        harness.add_target("a")
        harness.cycle("a")
        obj = harness.object_of("a", task)
        client_put(harness, obj.href, completed_like(obj.data, client), obj.etag)
        harness.emulator.admin.reset_counters()
        summary = harness.cycle("a")
        assert summary.written_back == 1
        assert harness.emulator.state.get(task)["done"] is True
        assert len(patches(harness)) == 1
        assert read_remote(obj.href, harness.object_of("a", task).data).done
        following = harness.cycle("a")
        assert harness.count("PUT") == 0
        assert following.written_back == 0
        harness.assert_converged("a")

    def test_reopened_todo_marks_activity_not_done(self, harness: Harness) -> None:
        """A done to-do unticked in the calendar → ``done`` false in the CRM; the next cycle writes nothing."""
        task = new_task(harness.emulator, done=True)
        harness.add_target("a")
        harness.cycle("a")
        obj = harness.object_of("a", task)
        assert read_remote(obj.href, obj.data).done
        client_put(harness, obj.href, reopened_like(obj.data), obj.etag)
        summary = harness.cycle("a")
        assert summary.written_back == 1
        assert harness.emulator.state.get(task)["done"] is False
        harness.cycle("a")
        assert harness.count("PUT") == 0
        harness.assert_converged("a")

    def test_writeback_disabled_leaves_the_crm_alone(self, harness: Harness) -> None:
        """With ``writeback = false`` a completion in the calendar is not sent to the CRM."""
        task = new_task(harness.emulator)
        harness.add_target("a", writeback=False)
        harness.cycle("a")
        obj = harness.object_of("a", task)
        client_put(harness, obj.href, completed_like(obj.data, "tasks.org"), obj.etag)
        summary = harness.cycle("a")
        assert summary.written_back == 0
        assert harness.emulator.state.get(task)["done"] is False
        assert patches(harness) == []


class TestCompletionConflicts:
    """Both sides changed completion since the last cycle: the policy decides."""

    @pytest.mark.parametrize(
        ("policy", "calendar_later", "crm_done"),
        [
            ("crm-wins", True, True),
            ("calendar-wins", False, False),
            ("newest-wins", True, False),
            ("newest-wins", False, True),
        ],
    )
    def test_policy_settles_a_completion_conflict(
        self, harness: Harness, policy: str, calendar_later: bool, crm_done: bool
    ) -> None:
        """Calendar ticks done (writeback refused), CRM marks done, calendar unticks: the policy's side wins on both."""
        harness.sync = {"reconcile_interval": "1h", "conflict_policy": policy}
        task = new_task(harness.emulator)
        harness.add_target("a")
        harness.cycle("a")
        obj = harness.object_of("a", task)
        client_put(harness, obj.href, completed_like(obj.data, "tasks.org"), obj.etag)
        # The CRM refuses the writeback: the calendar's "done" is recorded but not taken.
        harness.emulator.admin.fault("status", count=1, status=400, method="PATCH", path="/activities")
        refused = harness.cycle("a")
        assert not refused.ok
        assert harness.emulator.state.get(task)["done"] is False
        # Meanwhile the CRM user marks it done and the calendar user unticks it.
        harness.emulator.state.patch_activity(task, {"done": True})
        obj = harness.object_of("a", task)
        when = datetime.now(UTC) + (timedelta(hours=1) if calendar_later else -timedelta(days=365))
        client_put(harness, obj.href, reopened_like(obj.data, at=when), obj.etag)
        harness.cycle("a")
        harness.cycle("a")
        assert harness.emulator.state.get(task)["done"] is crm_done
        assert read_remote(obj.href, harness.object_of("a", task).data).done is crm_done
        harness.cycle("a")
        assert harness.count("PUT") == 0
        # Not compared byte for byte: when the CRM's final state maps to the bytes we
        # pushed first (all its stamps in one second), the calendar keeps the other
        # client's edits of fields we own until the next CRM change, by design.


# The calendar server plays no part in what is tested here: one is enough.
@pytest.mark.parametrize("caldav_server", ["radicale"], indirect=True)
class TestLostWritebackAnswer:
    """The API applied the bulk PATCH but its answer was lost: the next cycle reads the CRM before sending again."""

    def _tick_with_lost_answer(self, h: Harness) -> int:
        """A to-do ticked in the calendar; the cycle's bulk PATCH is applied and every answer lost."""
        task = new_task(h.emulator)
        h.add_target("a")
        h.cycle("a")
        obj = h.object_of("a", task)
        client_put(h, obj.href, completed_like(obj.data, "tasks.org"), obj.etag)
        h.emulator.admin.fault("drop_answer", count=10, method="PATCH", path="/activities")
        lost = h.cycle("a")
        h.emulator.admin.clear_faults()
        assert not lost.ok
        assert h.emulator.state.get(task)["done"] is True
        return task

    def test_a_later_crm_change_is_not_overwritten(self, harness: Harness) -> None:
        """The CRM user sets done back to false after the lost answer: that change stands on both sides."""
        task = self._tick_with_lost_answer(harness)
        harness.emulator.state.patch_activity(task, {"done": False})
        harness.emulator.admin.reset_counters()
        harness.cycle("a")
        assert harness.emulator.state.get(task)["done"] is False
        assert patches(harness) == []
        assert read_remote("", harness.object_of("a", task).data).done is False
        assert harness.store.count_pending_writebacks("a") == 0
        harness.cycle("a")
        assert harness.count("PUT") == 0
        assert harness.emulator.state.get(task)["done"] is False

    def test_a_delivered_writeback_is_recorded_without_sending_it_again(self, harness: Harness) -> None:
        """Nothing changed since the lost answer: the CRM already holds the completion, no PATCH is sent."""
        task = self._tick_with_lost_answer(harness)
        harness.emulator.admin.reset_counters()
        summary = harness.cycle("a")
        assert summary.ok
        assert patches(harness) == []
        assert harness.store.count_pending_writebacks("a") == 0
        assert harness.emulator.state.get(task)["done"] is True
        harness.cycle("a")
        assert harness.count("PUT") == 0
        harness.assert_converged("a")

    def test_an_untick_after_the_lost_answer_reaches_the_crm(self, harness: Harness) -> None:
        """The calendar user unticks the to-do after the lost answer: the CRM (which took the tick) follows."""
        task = self._tick_with_lost_answer(harness)
        obj = harness.object_of("a", task)
        client_put(harness, obj.href, reopened_like(obj.data), obj.etag)
        harness.cycle("a")
        assert harness.emulator.state.get(task)["done"] is False
        assert read_remote("", harness.object_of("a", task).data).done is False
        harness.cycle("a")
        assert harness.count("PUT") == 0
        assert harness.emulator.state.get(task)["done"] is False
