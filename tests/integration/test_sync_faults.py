"""The sync engine under interference and faults: concurrent edits, lost sync tokens, servers going down."""

from __future__ import annotations

import pytest

from apexcal.errors import ApexcalError, ApiError
from tests.integration.test_sync_support import Harness, edited_like, harness, new_activity

__all__ = ["harness"]


class TestConcurrentEdits:
    """Another client writes between our read and our write."""

    def test_edit_between_read_and_write_is_never_overwritten_blind(self, harness: Harness) -> None:
        """Our conditional PUT meets 412; the foreign edit survives; the next cycle re-reads and converges."""
        ids = [new_activity(harness.emulator, subject=f"Visit {i}") for i in range(3)]
        harness.add_target("a")
        harness.cycle("a")
        harness.emulator.state.patch_activity(ids[0], {"subject": "Visit moved"})
        obj = harness.object_of("a", ids[0])
        edited = edited_like(obj.data, "Bring the contract")

        reported: list[int] = []

        def edit_after_detection(method: str, status: int) -> None:
            # Right after our read (the sync REPORT, then the listing that checks
            # an answer naming all our objects), before any PUT: another client edits.
            if method == "REPORT":
                reported.append(status)
            elif method == "PROPFIND" and reported:
                harness.hooks.clear()
                assert harness.put_raw("a", obj.href, edited, obj.etag).status_code in (200, 204)

        harness.hooks.append(edit_after_detection)
        summary = harness.cycle("a")
        assert summary.skipped == 1
        assert summary.updated == 0
        assert (412, "PUT") in {(s, m) for m, s in harness.requests}
        assert b"Bring the contract" in harness.object_of("a", ids[0]).data
        summary = harness.cycle("a")
        assert summary.updated == 1
        assert b"Visit moved" in harness.object_of("a", ids[0]).data
        harness.assert_converged("a")


class TestDeletionMissed:
    """An object deleted in the calendar whose deletion apexcal never heard of (a token issued after it)."""

    def _delete_unseen(self, harness: Harness, activity_id: int) -> str:
        gone = harness.object_of("a", activity_id)
        assert harness.delete_raw("a", gone.href).status_code in (200, 204)
        with harness.sink("a") as sink:
            token = sink.changes(None).token
        assert token is not None
        harness.store.set_sync_token("a", token)
        return gone.href

    def test_update_of_a_vanished_object_recreates_it_in_the_same_cycle(self, harness: Harness) -> None:
        """The update's If-Match meets 412; the href is re-read, found gone, and the object re-created."""
        ids = [new_activity(harness.emulator, subject=f"Visit {i}") for i in range(3)]
        harness.add_target("a")
        harness.cycle("a")
        self._delete_unseen(harness, ids[0])
        harness.emulator.state.patch_activity(ids[0], {"subject": "Visit moved"})
        summary = harness.cycle("a")
        assert summary.ok
        assert (summary.created, summary.skipped) == (1, 0)
        assert b"Visit moved" in harness.object_of("a", ids[0]).data
        harness.assert_converged("a")
        summary = harness.cycle("a")
        assert summary.ok
        assert summary.skipped == 0
        assert harness.count("PUT") == 0

    def test_without_recreate_a_vanished_object_is_forgotten_not_retried(self, harness: Harness) -> None:
        """With recreate_deleted off the record becomes a tombstone: no 412 on any later cycle."""
        harness.sync = {**harness.sync, "recreate_deleted": False}
        ids = [new_activity(harness.emulator, subject=f"Visit {i}") for i in range(3)]
        harness.add_target("a")
        harness.cycle("a")
        href = self._delete_unseen(harness, ids[0])
        harness.emulator.state.patch_activity(ids[0], {"subject": "Visit moved"})
        summary = harness.cycle("a")
        assert summary.ok
        assert (summary.created, summary.skipped) == (0, 0)
        assert href not in harness.remote("a")
        harness.emulator.state.patch_activity(ids[0], {"subject": "Visit moved again"})
        summary = harness.cycle("a")
        assert summary.ok
        assert summary.skipped == 0
        assert harness.count("PUT") == 0


    def test_calendar_reconcile_finds_a_deletion_no_token_reports(self, harness: Harness) -> None:
        """With caldav_reconcile_interval "0s" a listing is compared each cycle: the object is re-created."""
        harness.sync = {**harness.sync, "caldav_reconcile_interval": "0s"}
        ids = [new_activity(harness.emulator, subject=f"Visit {i}") for i in range(3)]
        harness.add_target("a")
        harness.cycle("a")
        self._delete_unseen(harness, ids[1])
        summary = harness.cycle("a")
        assert summary.ok
        assert summary.created == 1
        assert harness.count("PROPFIND") >= 2  # the collection, then its full listing
        harness.assert_converged("a")
        reconciled = harness.store.target_state("a").last_caldav_reconcile_at
        assert reconciled is not None
        summary = harness.cycle("a")
        assert summary.created == 0
        assert harness.count("PUT") == 0
        harness.cycle("a")  # unchanged since its token: no REPORT, but the due listing is read
        assert [m for m, _ in harness.requests] == ["PROPFIND", "PROPFIND"]
        assert harness.store.target_state("a").last_caldav_reconcile_at > reconciled

    def test_without_a_due_reconcile_the_listing_is_not_read(self, harness: Harness) -> None:
        """The default interval (1 day): once our writes' echo is past, a cycle sends no full listing."""
        new_activity(harness.emulator, subject="Visit")
        harness.add_target("a")
        harness.cycle("a")
        assert harness.store.target_state("a").last_caldav_reconcile_at is not None
        harness.cycle("a")  # the echo of our own write
        harness.cycle("a")
        assert harness.count("PROPFIND") == 1


class TestSyncTokens:
    """An expired or invalid sync token falls back to a full listing that misses nothing."""

    def test_invalid_token_falls_back_to_full_listing(self, harness: Harness) -> None:
        """With a token the server rejects, a remote deletion and a CRM change are both still handled."""
        harness.sync = {"reconcile_interval": "0s"}
        ids = [new_activity(harness.emulator, subject=f"Call {i}") for i in range(5)]
        harness.add_target("a")
        harness.cycle("a")
        gone_remotely = harness.object_of("a", ids[0])
        assert harness.delete_raw("a", gone_remotely.href).status_code in (200, 204)
        harness.emulator.state.delete_activity(ids[1])
        harness.emulator.state.patch_activity(ids[2], {"subject": "Call moved"})
        harness.store.set_sync_token("a", "http://radicale.org/ns/sync/invalid-token-0000")
        summary = harness.cycle("a")
        assert summary.ok
        assert (summary.created, summary.updated, summary.deleted) == (1, 1, 1)
        harness.assert_converged("a")
        assert harness.store.target_state("a").sync_token not in (None, "http://radicale.org/ns/sync/invalid-token-0000")
        harness.cycle("a")
        assert harness.count("PUT") == 0


class TestOutages:
    """A peer failing mid-cycle fails the cycle cleanly; the next cycle converges."""

    def test_api_down_mid_cycle_fails_cleanly_then_converges(self, harness: Harness) -> None:
        """The type listing fails after the change feed: the cycle raises and records it; the next one converges."""
        for i in range(4):
            new_activity(harness.emulator, subject=f"Demo {i}")
        harness.add_target("a")
        harness.emulator.admin.fault("status", count=5, status=503, path="/activity-types")
        with pytest.raises(ApiError):
            harness.cycle("a")
        state = harness.store.target_state("a")
        assert state.consecutive_failures == 1
        assert state.last_error_kind == "ServerError"
        harness.emulator.admin.clear_faults()
        summary = harness.cycle("a")
        assert summary.ok
        assert summary.created == 4
        harness.assert_converged("a")

    def test_writeback_refused_keeps_the_journal_and_retries(self, harness: Harness) -> None:
        """A bulk PATCH that fails leaves the entry pending; the next cycle sends it."""
        from tests.integration.test_sync_support import completed_like, new_task

        task = new_task(harness.emulator)
        harness.add_target("a")
        harness.cycle("a")
        obj = harness.object_of("a", task)
        assert harness.put_raw("a", obj.href, completed_like(obj.data, "tasks.org"), obj.etag).status_code in (200, 204)
        harness.emulator.admin.fault("status", count=5, status=503, method="PATCH", path="/activities")
        summary = harness.cycle("a")
        assert not summary.ok
        assert harness.store.count_pending_writebacks("a") == 1
        harness.emulator.admin.clear_faults()
        summary = harness.cycle("a")
        assert summary.written_back == 1
        assert harness.emulator.state.get(task)["done"] is True
        assert harness.store.count_pending_writebacks("a") == 0
        harness.assert_converged("a")

    @pytest.mark.slow
    def test_caldav_server_stopped_mid_cycle_fails_cleanly_then_converges(self, harness: Harness) -> None:
        """The server stops after the first PUT: the cycle fails, and once it is back the next one converges."""
        for i in range(10):
            new_activity(harness.emulator, subject=f"Lunch {i}")
        harness.add_target("a")
        server = harness.server

        def stop_after_first_put(method: str, status: int) -> None:
            if method == "PUT":
                harness.hooks.clear()
                server.stop()

        harness.hooks.append(stop_after_first_put)
        try:
            try:
                summary = harness.cycle("a")
            except ApexcalError:
                pass  # the cycle itself failed (a read after the writes): also clean
            else:
                assert not summary.ok
                assert summary.errors
            assert harness.store.target_state("a").consecutive_failures == 1
        finally:
            server.start()
        summary = harness.cycle("a")
        assert summary.ok
        harness.assert_converged("a")
        harness.cycle("a")
        assert harness.count("PUT") == 0


class TestCancellation:
    """A stop request ends a cycle between objects, with everything written so far recorded."""

    def test_stop_request_ends_the_cycle_and_the_next_one_finishes(self, harness: Harness) -> None:
        """Asked to stop after the first PUT, the cycle ends early; the next cycle writes only the rest."""
        from apexcal.errors import CycleCancelled

        for i in range(8):
            new_activity(harness.emulator, subject=f"Standup {i}")
        harness.add_target("a")
        with pytest.raises(CycleCancelled):
            harness.cycle("a", should_stop=lambda: harness.count("PUT") >= 1)
        written = len(harness.remote("a"))
        assert 1 <= written < 8
        assert harness.store.target_state("a").consecutive_failures == 0
        summary = harness.cycle("a")
        assert summary.created == 8 - written
        harness.assert_converged("a")
