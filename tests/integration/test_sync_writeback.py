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


ALICE, BOB = 46, 47


def _tick_then_leave(h: Harness, client: str = "tasks.org") -> int:
    """Targets of Alice's and Bob's to-dos; a task of Alice's synced, ticked in her calendar (``client``'s shape)."""
    h.add_target("a", tasks_as="todos", filter={"assigned_to_user_id": ALICE})
    h.add_target("b", tasks_as="todos", filter={"assigned_to_user_id": BOB})
    task = new_task(h.emulator, assigned_to_user_id=ALICE)
    h.cycle("a")
    h.cycle("b")
    obj = h.object_of("a", task)
    assert h.put_raw("a", obj.href, completed_like(obj.data, client), obj.etag).is_success
    return task


def _quiet(h: Harness, *names: str) -> None:
    """One more cycle of each target writes nothing to either side."""
    for name in names:
        h.emulator.admin.reset_counters()
        summary = h.cycle(name)
        assert summary.ok, summary.line()
        writes = [m for m, _ in h.requests if m in ("PUT", "DELETE")]
        assert (writes, summary.written_back, patches(h)) == ([], 0, []), name


# The calendar server plays no part in what is tested here: one is enough (the
# held-UID path of Cyrus is tested in test_shared_account).
@pytest.mark.parametrize("caldav_server", ["radicale"], indirect=True)
class TestCompletionOfLeavingObjects:
    """A to-do ticked in a calendar just before its activity leaves that target's filter is written back before its copy goes."""

    @pytest.mark.parametrize("client", ["tasks.org", "thunderbird"])
    def test_reassigned_after_a_tick_is_written_back_then_moved(self, harness: Harness, client: str) -> None:
        """Ticked in Alice's calendar, reassigned to Bob: the CRM takes the tick, the to-do ends in Bob's calendar only, done."""
        task = _tick_then_leave(harness, client)
        harness.emulator.state.patch_activity(task, {"assigned_to_user_id": BOB})
        old = harness.cycle("a")
        assert (old.ok, old.written_back, old.deleted) == (True, 1, 1), old.line()
        assert harness.emulator.state.get(task)["done"] is True
        new = harness.cycle("b")
        assert (new.ok, new.created) == (True, 1), new.line()
        assert harness.remote("a") == {}
        assert read_remote("", harness.object_of("b", task).data).done is True
        _quiet(harness, "a", "b")
        harness.assert_converged("b")

    def test_new_target_first_converges_on_the_next_run(self, harness: Harness) -> None:
        """Bob's target runs before Alice's: it creates the to-do open; the tick reaches the CRM, then Bob's copy."""
        task = _tick_then_leave(harness)
        harness.emulator.state.patch_activity(task, {"assigned_to_user_id": BOB})
        assert harness.cycle("b").created == 1
        assert harness.cycle("a").written_back == 1
        assert harness.emulator.state.get(task)["done"] is True
        assert harness.cycle("b").updated == 1
        assert read_remote("", harness.object_of("b", task).data).done is True
        assert harness.remote("a") == {}
        _quiet(harness, "a", "b")

    def test_retyped_out_of_the_filter_after_a_tick_is_written_back(self, harness: Harness) -> None:
        """A target of tasks only; the ticked task becomes a call in the CRM: the tick is written back, the to-do removed."""
        harness.add_target("a", tasks_as="todos", filter={"activity_type": "task"})
        task = new_task(harness.emulator)
        harness.cycle("a")
        obj = harness.object_of("a", task)
        assert harness.put_raw("a", obj.href, completed_like(obj.data, "tasks.org"), obj.etag).is_success
        harness.emulator.state.patch_activity(task, {"activity_type": "call"})
        left = harness.cycle("a")
        assert (left.ok, left.written_back, left.deleted) == (True, 1, 1), left.line()
        assert harness.emulator.state.get(task)["done"] is True
        _quiet(harness, "a")

    def test_a_tick_after_the_read_stops_the_delete_and_is_written_back_next(self, harness: Harness) -> None:
        """Ticked between the cycle's read and its delete: the conditional delete is refused; the next cycle writes the tick back, then deletes."""
        harness.add_target("a", tasks_as="todos", filter={"assigned_to_user_id": ALICE})
        task = new_task(harness.emulator, assigned_to_user_id=ALICE)
        harness.cycle("a")
        obj = harness.object_of("a", task)
        harness.emulator.state.patch_activity(task, {"assigned_to_user_id": BOB})
        ticked: list[str] = []

        def tick(method: str, _status: int) -> None:
            # After the calendar's listing (the cycle's last read: the etag is unchanged then).
            ticked.append(method)
            if ticked.count("PROPFIND") == 2 and method == "PROPFIND":
                assert harness.put_raw("a", obj.href, completed_like(obj.data, "tasks.org"), obj.etag).is_success

        harness.hooks.append(tick)
        refused = harness.cycle("a")
        harness.hooks.clear()
        assert ticked.count("PROPFIND") == 2
        assert (refused.deleted, refused.skipped) == (0, 1), refused.line()
        assert [status for method, status in harness.requests if method == "DELETE"] == [412]
        assert harness.emulator.state.get(task)["done"] is False
        then = harness.cycle("a")
        assert (then.ok, then.written_back, then.deleted) == (True, 1, 1), then.line()
        assert harness.emulator.state.get(task)["done"] is True
        _quiet(harness, "a")

    def test_writeback_refused_keeps_the_copy_until_it_is_sent(self, harness: Harness) -> None:
        """The API refuses the writeback: the copy stays (its tick journaled); the next cycle sends it, then deletes."""
        task = _tick_then_leave(harness)
        harness.emulator.state.patch_activity(task, {"assigned_to_user_id": BOB})
        harness.emulator.admin.fault("status", count=1, status=400, method="PATCH", path="/activities")
        refused = harness.cycle("a")
        assert (refused.ok, refused.deleted) == (False, 0), refused.line()
        assert harness.store.count_pending_writebacks("a") == 1
        assert harness.emulator.state.get(task)["done"] is False
        then = harness.cycle("a")
        assert (then.ok, then.deleted) == (True, 1), then.line()
        assert harness.emulator.state.get(task)["done"] is True
        harness.cycle("b")
        assert read_remote("", harness.object_of("b", task).data).done is True
        _quiet(harness, "a", "b")

    def test_a_crm_deletion_wins_over_a_tick(self, harness: Harness) -> None:
        """The activity deleted in the CRM after the tick: nothing is written back to it, its copy goes."""
        harness.sync = {"reconcile_interval": "0s"}
        task = _tick_then_leave(harness)
        harness.emulator.state.delete_activity(task)
        gone = harness.cycle("a")
        assert (gone.ok, gone.written_back, gone.deleted) == (True, 0, 1), gone.line()
        assert patches(harness) == []
        _quiet(harness, "a", "b")
