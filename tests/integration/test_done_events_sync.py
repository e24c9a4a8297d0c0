"""``done_events`` on CalDAV targets, against each real server with the emulator as the API."""

from __future__ import annotations

from apexcal.ical.remote import read_remote
from tests.integration.test_sync_support import Harness, harness, new_activity, new_task

__all__ = ["harness"]


def _summaries(h: Harness) -> dict[int, str]:
    """SUMMARY by activity id of every object in target ``a``'s calendar."""
    out: dict[int, str] = {}
    for obj in h.remote("a").values():
        remote = read_remote(obj.href, obj.data)
        summary = next(
            line.split(":", 1)[1]
            for line in obj.data.decode().replace("\r\n ", "").split("\r\n")
            if line.startswith("SUMMARY")
        )
        assert remote.activity_id is not None
        out[remote.activity_id] = summary
    return out


class TestDoneEventsOnTargets:
    def test_check_marks_then_hide_removes_then_keep_restores(self, harness: Harness) -> None:
        """check: "✓ " on done events only; hide: done non-tasks deleted, done tasks stay; keep: back as they were."""
        e = harness.emulator
        open_call = new_activity(e, subject="Open call", activity_type="call")
        done_call = new_activity(e, subject="Done call", activity_type="call", done=True)
        done_task = new_task(e, subject="Done task", done=True)
        harness.add_target("a", done_events="check")
        assert harness.cycle("a").ok
        assert _summaries(harness) == {
            open_call: "Open call",
            done_call: "✓ Done call",
            done_task: "Done task",  # a completed VTODO shows it is done
        }
        harness.assert_converged("a")

        harness.targets["a"]["done_events"] = "hide"
        summary = harness.cycle("a")
        assert summary.ok
        assert _summaries(harness) == {open_call: "Open call", done_task: "Done task"}
        harness.assert_converged("a")

        # Completed in the CRM while hidden: it leaves the calendar at the next cycle.
        e.state.patch_activity(open_call, {"done": True})
        assert harness.cycle("a").ok
        assert _summaries(harness) == {done_task: "Done task"}

        harness.targets["a"]["done_events"] = "keep"
        assert harness.cycle("a").ok
        assert _summaries(harness) == {
            open_call: "Open call",
            done_call: "Done call",
            done_task: "Done task",
        }
        harness.assert_converged("a")
