"""Two targets in one CalDAV account: reassignment between them, and activities both want (Cyrus keeps UIDs per account)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.caldav_servers import CalDAVServerHandle
from tests.fixtures.emulator import EmulatorHandle
from tests.integration.test_sync_support import (
    Harness,
    completed_like,
    harness,
    new_activity,
    new_task,
)

__all__ = ["harness"]

pytestmark = pytest.mark.caldav

ALICE, BOB, CAROL = 46, 47, 48


def _two_targets(h: Harness, **b_filter: object) -> None:
    h.add_target("a", filter={"assigned_to_user_id": ALICE})
    h.add_target("b", filter=b_filter or {"assigned_to_user_id": BOB})


class TestReassignment:
    """Activities reassigned from one target's user to the other's, on every server."""

    def test_reassignment_converges_whichever_target_runs_first(self, harness: Harness) -> None:
        """New target first: its cycle creates the object (on Cyrus removing the old target's copy); the last two leave freely."""
        ids = [new_activity(harness.emulator, assigned_to_user_id=ALICE) for _ in range(3)]
        _two_targets(harness)
        assert harness.cycle("a").created == 3
        harness.emulator.state.patch_activity(ids[0], {"assigned_to_user_id": BOB})
        early = harness.cycle("b")
        assert (early.ok, early.created) == (True, 1), early.line()
        old = harness.cycle("a")
        assert old.ok, old.line()
        harness.assert_converged("a")
        harness.assert_converged("b")
        # The old target's last two activities leave: it deletes both without --force.
        for aid in ids[1:]:
            harness.emulator.state.patch_activity(aid, {"assigned_to_user_id": BOB})
        emptied = harness.cycle("a")
        assert (emptied.ok, emptied.deleted) == (True, 2), emptied.line()
        assert harness.cycle("b").created == 2
        settled = harness.cycle("b")
        assert (settled.ok, harness.count("PUT")) == (True, 0), settled.line()
        harness.assert_converged("a")
        harness.assert_converged("b")


@pytest.fixture
def cyrus(emulator: EmulatorHandle, cyrus_server: CalDAVServerHandle, tmp_path: Path) -> Iterator[Harness]:
    """A harness on Cyrus, whose calendars of one user share one UID space."""
    cyrus_server.start()
    h = Harness(emulator=emulator, server=cyrus_server, tmp=tmp_path)
    try:
        yield h
    finally:
        h.close()
        cyrus_server.delete_made_calendars()


def _collection(h: Harness, name: str) -> str:
    with h.sink(name) as sink:
        return sink.href_for("x.ics").removesuffix("x.ics")


class TestSharedActivity:
    """An activity both targets of one Cyrus account want: reported once, never rewritten, synced when freed."""

    def test_shared_activity_is_reported_once_and_not_put_again(self, cyrus: Harness) -> None:
        """The second target's first cycle reports the holder's calendar; later cycles send no PUT and pass."""
        aid = new_activity(cyrus.emulator, assigned_to_user_id=ALICE, activity_type="meeting")
        _two_targets(cyrus, activity_type="meeting")
        assert cyrus.cycle("a").created == 1
        first = cyrus.cycle("b")
        line = (
            f"activity {aid} already lives in {_collection(cyrus, 'a')} of this account; "
            "two targets of one Cyrus/Fastmail account must not share activities"
        )
        assert [e.reason for e in first.errors] == [line]
        assert any("share the account" in w for w in first.warnings), first.warnings
        for _ in range(2):
            again = cyrus.cycle("b")
            assert (again.ok, cyrus.count("PUT")) == (True, 0), again.line()
        cyrus.emulator.state.patch_activity(aid, {"subject": "Agenda changed"})
        cyrus.cycle("a")
        changed = cyrus.cycle("b")
        assert (changed.ok, cyrus.count("PUT")) == (True, 0), changed.line()
        assert len(cyrus.store.records("a")) == 1
        cyrus.sync["reconcile_interval"] = "0s"
        cyrus.emulator.state.delete_activity(aid)
        assert cyrus.cycle("b").ok
        assert cyrus.store.records("b") == {}

    def test_shared_activity_syncs_once_the_overlap_ends(self, cyrus: Harness) -> None:
        """Reassigned out of the first target's filter: the second target's next cycle creates it, whichever runs first."""
        aid = new_activity(cyrus.emulator, assigned_to_user_id=ALICE, activity_type="meeting")
        _two_targets(cyrus, activity_type="meeting")
        cyrus.cycle("a")
        cyrus.cycle("b")
        cyrus.emulator.state.patch_activity(aid, {"assigned_to_user_id": CAROL})
        freed = cyrus.cycle("b")
        assert (freed.ok, freed.created) == (True, 1), freed.line()
        assert cyrus.cycle("a").ok
        cyrus.assert_converged("a")
        cyrus.assert_converged("b")
        assert cyrus.store.records("a") == {}

    def test_activity_freed_by_the_other_targets_filter_syncs_without_a_crm_change(
        self, cyrus: Harness
    ) -> None:
        """The holder's filter changed in the config: the next cycle of the second target creates the object."""
        new_activity(cyrus.emulator, assigned_to_user_id=ALICE, activity_type="meeting")
        _two_targets(cyrus, activity_type="meeting")
        cyrus.cycle("a")
        cyrus.cycle("b")
        cyrus.targets["a"]["filter"] = {"assigned_to_user_id": CAROL}
        assert cyrus.cycle("a").deleted == 1
        freed = cyrus.cycle("b")
        assert (freed.ok, freed.created) == (True, 1), freed.line()
        cyrus.assert_converged("a")
        cyrus.assert_converged("b")

    def test_a_copy_changed_since_its_target_saw_it_is_left_to_that_target(self, cyrus: Harness) -> None:
        """Reassigned task ticked in the old calendar: the new target does not delete that copy; the old one writes the tick back, then the new one creates it done."""
        aid = new_task(cyrus.emulator, assigned_to_user_id=ALICE)
        _two_targets(cyrus, assigned_to_user_id=BOB)
        cyrus.targets["a"]["tasks_as"] = cyrus.targets["b"]["tasks_as"] = "todos"
        cyrus.cycle("a")
        obj = cyrus.object_of("a", aid)
        assert cyrus.put_raw("a", obj.href, completed_like(obj.data, "tasks.org"), obj.etag).is_success
        cyrus.emulator.state.patch_activity(aid, {"assigned_to_user_id": BOB})
        waiting = cyrus.cycle("b")
        assert (waiting.ok, waiting.created) == (True, 0), waiting.line()
        assert [status for method, status in cyrus.requests if method == "DELETE"] == [412]
        assert b"COMPLETED" in cyrus.object_of("a", aid).data
        old = cyrus.cycle("a")
        assert (old.ok, old.written_back, old.deleted) == (True, 1, 1), old.line()
        assert cyrus.emulator.state.get(aid)["done"] is True
        freed = cyrus.cycle("b")
        assert (freed.ok, freed.created) == (True, 1), freed.line()
        assert b"COMPLETED" in cyrus.object_of("b", aid).data
        for name in ("a", "b"):
            quiet = cyrus.cycle(name)
            assert (quiet.ok, quiet.written_back, cyrus.count("PUT"), cyrus.count("DELETE")) == (
                True, 0, 0, 0,
            ), quiet.line()
        cyrus.assert_converged("a")
        cyrus.assert_converged("b")
