"""Table tests of the sync planner: one class per rule of its module docstring."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apexcal.errors import MassDeleteRefused
from apexcal.sync.plan import (
    Adopt,
    ConflictPolicy,
    Create,
    Delete,
    DeleteGuard,
    Desired,
    Forget,
    Kind,
    ObjectRecord,
    Plan,
    Refresh,
    RemoteSeen,
    RemoteState,
    Tombstone,
    Update,
    UpdateRecord,
    Writeback,
    plan,
)
from apexcal.sync.plan_model import TOMBSTONE_KIND

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def desired(
    aid: int = 1, *, version: int = 0, done: bool = False, kind: Kind = "VTODO", updated: int = 0
) -> Desired:
    """The object the CRM wants for activity ``aid`` at a content version."""
    uid = f"apexcal-1-{aid}@example.com"
    data = f"{uid} v{version} done={done} u{updated}".encode()
    return Desired(
        uid=uid,
        activity_id=aid,
        href_name=f"{uid}.ics",
        content_hash=_sha(data),
        data=data,
        kind=kind,
        done=done,
        updated_at=T0 + timedelta(minutes=updated),
    )


def recorded(d: Desired, *, etag: str | None = '"e1"', **changes: object) -> ObjectRecord:
    """The record left by a successful push of ``d`` (``remote_deleted=True``: a tombstone)."""
    if changes.pop("remote_deleted", False):
        changes["kind"] = TOMBSTONE_KIND
    rec = ObjectRecord(
        target="t",
        uid=d.uid,
        activity_id=d.activity_id,
        href=f"/cal/{d.href_name}",
        etag=etag,
        pushed_hash=d.content_hash,
        done_seen=d.done if d.kind == "VTODO" else None,
        pushed_done=d.done if d.kind == "VTODO" else None,
    )
    return replace(rec, **changes)  # type: ignore[arg-type]


def seen(
    rec: ObjectRecord,
    *,
    etag: str = '"e2"',
    done: bool | None = None,
    modified: datetime | None = None,
    href: str | None = None,
    content_hash: str | None = None,
) -> RemoteSeen:
    """The object at ``rec``'s href as read this cycle."""
    return RemoteSeen(
        href=href or rec.href,
        etag=etag,
        uid=rec.uid,
        done=done,
        modified=modified,
        content_hash=content_hash,
    )


def run(
    ds: list[Desired],
    rs: list[ObjectRecord],
    remote: RemoteState | None = None,
    **kw: object,
) -> Plan:
    """Plan for target ``t``."""
    return plan(target="t", desired=ds, recorded=rs, remote=remote or RemoteState(), **kw)  # type: ignore[arg-type]


class TestUnchanged:
    """Rule 1: unchanged activities cost nothing."""

    def test_same_hash_and_no_remote_change_plans_nothing(self) -> None:
        """An activity whose hash equals the pushed hash and whose object did not change plans nothing."""
        d = desired()
        assert run([d], [recorded(d)]).is_empty

    def test_remote_listing_with_the_recorded_etag_plans_nothing(self) -> None:
        """Reading back our own write (same etag, same completion) plans nothing."""
        d = desired()
        r = recorded(d)
        remote = RemoteState(seen=(seen(r, etag='"e1"', done=False),))
        assert run([d], [r], remote).is_empty

    def test_a_full_listing_of_unchanged_objects_plans_nothing(self) -> None:
        """A full listing whose hrefs are all recorded and unchanged plans nothing."""
        ds = [desired(i) for i in range(1, 5)]
        rs = [recorded(d) for d in ds]
        remote = RemoteState(full=True, listed=frozenset(r.href for r in rs))
        assert run(ds, rs, remote).is_empty


class TestCrmChanges:
    """Rule 2: CRM creations, edits and removals."""

    def test_new_activity_is_created(self) -> None:
        """A desired activity without a record becomes a Create carrying its bytes."""
        d = desired()
        p = run([d], [])
        assert p.creates == (
            Create(
                uid=d.uid,
                activity_id=1,
                href_name=d.href_name,
                data=d.data,
                content_hash=d.content_hash,
                kind="VTODO",
                done=False,
            ),
        )
        assert p.counts()["create"] == 1

    def test_changed_activity_is_updated_with_the_recorded_etag(self) -> None:
        """A changed activity is PUT with If-Match on the recorded etag."""
        d0 = desired()
        d1 = desired(version=1)
        p = run([d1], [recorded(d0)])
        assert [(u.href, u.etag, u.content_hash) for u in p.updates] == [
            (f"/cal/{d1.href_name}", '"e1"', d1.content_hash)
        ]

    def test_changed_activity_with_a_remote_change_uses_the_etag_read_now(self) -> None:
        """When the object was read this cycle, If-Match carries the etag just read."""
        d0 = desired()
        d1 = desired(version=1)
        r = recorded(d0)
        p = run([d1], [r], RemoteState(seen=(seen(r, etag='"e9"', done=False),)))
        assert [u.etag for u in p.updates] == ['"e9"']

    def test_unknown_etag_asks_for_a_read_instead_of_writing_blind(self) -> None:
        """A write needing an etag we do not know becomes a Refresh, never an unconditional PUT."""
        d0 = desired()
        p = run([desired(version=1)], [recorded(d0, etag=None)])
        assert p.updates == ()
        assert p.refreshes == (Refresh(uid=d0.uid, href=f"/cal/{d0.href_name}"),)

    def test_activity_that_left_the_filter_is_deleted(self) -> None:
        """A record without a desired object is deleted with If-Match."""
        d = desired()
        p = run([desired(2)], [recorded(d), recorded(desired(2))])
        assert p.deletes == (Delete(uid=d.uid, href=f"/cal/{d.href_name}", etag='"e1"'),)

    def test_writes_are_ordered_deletes_updates_creates(self) -> None:
        """The write order frees names before re-using them."""
        a, b = desired(1), desired(2)
        p = run([desired(2, version=1), desired(3)], [recorded(a), recorded(b)])
        assert [type(w) for w in p.writes] == [Delete, Update, Create]


class TestRemoteCompletion:
    """Rule 3: completion changed on the calendar, writeback and conflicts."""

    def test_remote_completion_is_written_back_without_a_put(self) -> None:
        """A to-do ticked on the calendar yields a writeback and a record update, never a PUT of the stale state."""
        d = desired()
        r = recorded(d)
        p = run([d], [r], RemoteState(seen=(seen(r, done=True),)))
        assert p.writebacks == (Writeback(uid=d.uid, activity_id=1, done=True),)
        assert p.record_updates == (
            UpdateRecord(uid=d.uid, href=r.href, etag='"e2"', done_seen=True),
        )
        assert p.writes == ()

    def test_remote_completion_while_the_crm_edited_other_fields_still_writes_back(self) -> None:
        """An edit of other fields in the CRM does not overrule a tick on the calendar."""
        d = desired()
        r = recorded(d)
        p = run([desired(version=1)], [r], RemoteState(seen=(seen(r, done=True),)))
        assert [w.done for w in p.writebacks] == [True]
        assert p.writes == ()

    def test_replanning_after_the_writeback_puts_once_and_then_nothing(self) -> None:
        """After the writeback the same cycle PUTs the CRM's new bytes once, and the next cycle plans nothing."""
        d0 = desired()
        r = recorded(d0)
        remote = RemoteState(seen=(seen(r, done=True),))
        d1 = desired(done=True, updated=1)  # the bulk PATCH bumped updated_at
        second = run([d1], [r], remote)
        assert second.writebacks == ()
        assert second.conflicts == ()
        assert [(u.done, u.etag) for u in second.updates] == [(True, '"e2"')]
        after = recorded(d1, etag='"e3"')
        next_cycle = RemoteState(seen=(seen(after, etag='"e3"', done=True),))
        assert run([d1], [after], next_cycle).is_empty

    def test_pending_writeback_is_repeated_and_not_overwritten(self) -> None:
        """A completion recorded as seen but not yet taken by the CRM is written back again, with no PUT."""
        d = desired()
        r = recorded(d, done_seen=True)
        p = run([desired(version=1)], [r])
        assert [w.done for w in p.writebacks] == [True]
        assert p.writes == ()

    def test_our_own_unrecorded_write_is_not_a_calendar_change(self) -> None:
        """After a crash between PUT and record, the completion we were pushing is taken as ours."""
        d0 = desired()
        r = recorded(d0, pending_done=True)  # the PUT of done=True landed, then the crash
        d2 = desired(done=False, updated=2)  # the CRM went back to not done since
        p = run([d2], [r], RemoteState(seen=(seen(r, done=True),)))
        assert p.writebacks == ()
        assert [u.done for u in p.updates] == [False]
        assert [(u.done_seen, u.pushed_done) for u in p.record_updates] == [(True, True)]

    def test_both_sides_reaching_the_same_state_is_no_conflict(self) -> None:
        """CRM and calendar both completing the to-do agree: the new bytes are PUT, nothing written back."""
        d0 = desired()
        r = recorded(d0)
        d1 = desired(done=True, updated=1)
        p = run([d1], [r], RemoteState(seen=(seen(r, done=True),)))
        assert (p.writebacks, p.conflicts) == ((), ())
        assert [u.done for u in p.updates] == [True]

    def test_crm_completion_is_pushed(self) -> None:
        """A completion set in the CRM alone is PUT."""
        d0 = desired()
        p = run([desired(done=True, updated=1)], [recorded(d0)])
        assert [u.done for u in p.updates] == [True]
        assert p.writebacks == ()

    def test_events_ignore_remote_completion(self) -> None:
        """A VEVENT has no completion to write back."""
        d = desired(kind="VEVENT")
        r = recorded(d)
        p = run([d], [r], RemoteState(seen=(seen(r, done=True),)))
        assert p.writebacks == ()
        assert p.writes == ()

    def test_disabled_writeback_treats_completion_as_a_foreign_edit(self) -> None:
        """With writeback off a remote tick is recorded and left alone until the CRM changes."""
        d = desired()
        r = recorded(d)
        p = run([d], [r], RemoteState(seen=(seen(r, done=True),)), writeback=False)
        assert p.writebacks == ()
        assert p.writes == ()
        assert [u.done_seen for u in p.record_updates] == [True]

    @pytest.mark.parametrize(
        ("policy", "modified_offset", "winner"),
        [
            (ConflictPolicy.CRM_WINS, 60, "crm"),
            (ConflictPolicy.CALENDAR_WINS, -60, "calendar"),
            (ConflictPolicy.NEWEST_WINS, 60, "calendar"),
            (ConflictPolicy.NEWEST_WINS, -60, "crm"),
            (ConflictPolicy.NEWEST_WINS, None, "crm"),
        ],
    )
    def test_conflicting_completion_follows_the_policy(
        self, policy: ConflictPolicy, modified_offset: int | None, winner: str
    ) -> None:
        """Both sides changed completion to different values: the policy picks the winner."""
        # We pushed not-done, then saw the calendar tick it (pending); now the CRM says
        # done while the calendar went back to not done.
        d0 = desired()
        r = recorded(d0, done_seen=True)
        d1 = desired(done=True, updated=10)
        modified = (
            None if modified_offset is None else d1.updated_at + timedelta(minutes=modified_offset)  # type: ignore[operator]
        )
        remote = RemoteState(seen=(seen(r, done=False, modified=modified),))
        p = run([d1], [r], remote, policy=policy)
        assert [(c.winner, c.crm_done, c.calendar_done) for c in p.conflicts] == [
            (winner, True, False)
        ]
        # What was read is recorded even if the write then fails.
        assert [u.done_seen for u in p.record_updates] == [False]
        if winner == "crm":
            assert p.writebacks == ()
            assert [u.done for u in p.updates] == [True]
        else:
            assert [w.done for w in p.writebacks] == [False]
            assert p.writes == ()


class TestRemoteDeletion:
    """Rule 4: objects deleted by the user."""

    def test_deleted_object_is_recreated_by_default(self) -> None:
        """A recorded object reported deleted is created again."""
        d = desired()
        r = recorded(d)
        p = run([d], [r], RemoteState(deleted=frozenset({r.href})))
        assert [c.uid for c in p.creates] == [d.uid]
        assert p.tombstones == (Tombstone(uid=d.uid),)

    def test_failed_recreation_is_retried_from_the_tombstone(self) -> None:
        """A tombstoned record whose re-creation failed is created again on the next plan."""
        d = desired()
        p = run([d], [recorded(d, remote_deleted=True)])
        assert [c.uid for c in p.creates] == [d.uid]

    def test_deleted_object_is_tombstoned_when_not_recreating(self) -> None:
        """Without recreate_deleted the record becomes a tombstone and nothing is written."""
        d = desired()
        r = recorded(d)
        p = run([d], [r], RemoteState(deleted=frozenset({r.href})), recreate_deleted=False)
        assert p.tombstones == (Tombstone(uid=d.uid),)
        assert p.writes == ()

    def test_tombstone_is_never_recreated_even_when_the_activity_changes(self) -> None:
        """A tombstoned record stays deleted while recreate_deleted is off."""
        d = desired()
        r = recorded(d, remote_deleted=True)
        assert run([desired(version=3)], [r], recreate_deleted=False).is_empty

    def test_tombstone_of_a_vanished_activity_is_forgotten(self) -> None:
        """A tombstone whose activity is no longer desired is dropped."""
        d = desired()
        assert run([], [recorded(d, remote_deleted=True)]).forgets == (Forget(uid=d.uid),)

    def test_gone_object_of_an_unwanted_activity_is_forgotten(self) -> None:
        """An object deleted on both sides only loses its record."""
        d = desired()
        r = recorded(d)
        p = run([], [r], RemoteState(deleted=frozenset({r.href})))
        assert (p.forgets, p.deletes) == ((Forget(uid=d.uid),), ())

    def test_full_listing_without_the_href_means_deleted(self) -> None:
        """A full listing that lacks a recorded href reports it deleted."""
        a, b = desired(1), desired(2)
        ra, rb = recorded(a), recorded(b)
        p = run([a, b], [ra, rb], RemoteState(full=True, listed=frozenset({ra.href})))
        assert [c.uid for c in p.creates] == [b.uid]

    def test_restored_object_clears_the_tombstone_by_adoption(self) -> None:
        """An object reappearing for a tombstoned record is adopted again."""
        d = desired()
        r = recorded(d, remote_deleted=True)
        remote = RemoteState(seen=(seen(r, etag='"e5"', done=False, content_hash=d.content_hash),))
        p = run([d], [r], remote, recreate_deleted=False)
        assert [(a.href, a.etag) for a in p.adopts] == [(r.href, '"e5"')]


class TestOddRemoteState:
    """Rule 7: any combination of record and remote state is planned sensibly."""

    def test_unparseable_object_at_our_href_is_still_ours(self) -> None:
        """An object read without a UID at a recorded href is treated as the recorded one."""
        d = desired()
        r = recorded(d)
        odd = RemoteSeen(href=r.href, etag='"e6"', uid=None, done=None)
        p = run([desired(version=1)], [r], RemoteState(seen=(odd,)))
        assert [(u.href, u.etag) for u in p.updates] == [(r.href, '"e6"')]

    def test_our_href_holding_another_uid_counts_as_gone(self) -> None:
        """When another UID now lives at our href, our object is gone and is tombstoned."""
        d = desired()
        r = recorded(d)
        other = RemoteSeen(href=r.href, etag='"e6"', uid="someone-else", done=None)
        p = run(
            [d],
            [r],
            RemoteState(seen=(other,)),
            recreate_deleted=False,
            owns=lambda uid: uid.startswith("apexcal-"),
        )
        assert p.tombstones == (Tombstone(uid=d.uid),)
        assert p.writes == ()

    def test_objects_with_foreign_uids_are_never_touched(self) -> None:
        """An object whose UID is not ours is neither deleted nor adopted."""
        other = RemoteSeen(href="/cal/x.ics", etag='"e1"', uid="x@elsewhere", done=True)
        p = run([desired()], [], RemoteState(seen=(other,)), owns=lambda uid: uid != other.uid)
        assert [c.uid for c in p.creates] == [desired().uid]
        assert (p.deletes, p.updates, p.adopts) == ((), (), ())

    def test_unwanted_object_with_unknown_etag_is_read_before_deleting(self) -> None:
        """A delete never goes out without If-Match: an unknown etag asks for a read."""
        d = desired()
        p = run([], [recorded(d, etag=None)])
        assert (p.deletes, [x.uid for x in p.refreshes]) == ((), [d.uid])


class TestForeignEdits:
    """Rule 5: edits of fields the CRM owns."""

    def test_etag_only_change_updates_the_record_without_a_put(self) -> None:
        """A foreign edit alone moves the recorded etag and writes nothing."""
        d = desired()
        r = recorded(d)
        p = run([d], [r], RemoteState(seen=(seen(r, etag='"e7"', done=False),)))
        assert p.record_updates == (
            UpdateRecord(uid=d.uid, href=r.href, etag='"e7"', done_seen=False),
        )
        assert p.writes == ()

    def test_next_crm_change_overwrites_the_foreign_edit(self) -> None:
        """The CRM's next change is PUT over the foreign edit with the etag read."""
        d = desired()
        r = recorded(d, etag='"e7"')
        p = run([desired(version=1)], [r])
        assert [u.etag for u in p.updates] == ['"e7"']


class TestAdoption:
    """Rule 6: objects with our UID that we have no live record of."""

    def test_identical_object_is_adopted_without_a_write(self) -> None:
        """A crash between PUT and record leaves an object with our bytes: it is adopted."""
        d = desired()
        obj = RemoteSeen(
            href="/cal/x.ics", etag='"e1"', uid=d.uid, done=False, content_hash=d.content_hash
        )
        p = run([d], [], RemoteState(seen=(obj,)))
        assert p.adopts == (
            Adopt(
                uid=d.uid,
                activity_id=1,
                href="/cal/x.ics",
                etag='"e1"',
                content_hash=d.content_hash,
                kind="VTODO",
                done=False,
            ),
        )
        assert p.writes == ()

    def test_differing_object_is_overwritten_conditionally(self) -> None:
        """An unrecorded object with other bytes is updated with If-Match on its etag."""
        d = desired()
        obj = RemoteSeen(href="/cal/x.ics", etag='"e4"', uid=d.uid, done=True)
        p = run([d], [], RemoteState(seen=(obj,)))
        assert [(u.href, u.etag, u.done) for u in p.updates] == [("/cal/x.ics", '"e4"', False)]
        assert p.creates == ()

    def test_unwanted_unrecorded_object_is_deleted(self) -> None:
        """An object with our UID for an activity no longer desired is deleted."""
        obj = RemoteSeen(href="/cal/x.ics", etag='"e4"', uid="apexcal-1-9@example.com", done=None)
        p = run([], [], RemoteState(seen=(obj,)))
        assert p.deletes == (Delete(uid=obj.uid or "", href="/cal/x.ics", etag='"e4"'),)

    def test_duplicates_of_a_recorded_uid_are_deleted(self) -> None:
        """A second object carrying a recorded UID is deleted; the recorded one is kept."""
        d = desired()
        r = recorded(d)
        dup = RemoteSeen(href="/cal/dup.ics", etag='"e8"', uid=d.uid, done=False)
        p = run([d], [r], RemoteState(seen=(dup,)))
        assert p.deletes == (Delete(uid=d.uid, href="/cal/dup.ics", etag='"e8"'),)

    def test_object_moved_to_another_href_is_adopted_there(self) -> None:
        """When the recorded href is gone and our UID shows up elsewhere, the new href is taken."""
        d = desired()
        r = recorded(d)
        moved = RemoteSeen(
            href="/cal/moved.ics", etag='"e3"', uid=d.uid, done=False, content_hash=d.content_hash
        )
        p = run([d], [r], RemoteState(seen=(moved,), deleted=frozenset({r.href})))
        assert [a.href for a in p.adopts] == ["/cal/moved.ics"]
        assert p.creates == ()


class TestMassDeleteGuard:
    """The guard against wiping a calendar."""

    @staticmethod
    def _setup(n: int, keep: int) -> tuple[list[Desired], list[ObjectRecord]]:
        ds = [desired(i) for i in range(1, n + 1)]
        return ds[:keep], [recorded(d) for d in ds]

    def test_deleting_more_than_the_share_is_refused(self) -> None:
        """Six deletes of ten records exceed half and raise MassDeleteRefused naming the counts."""
        ds, rs = self._setup(10, 4)
        with pytest.raises(MassDeleteRefused) as info:
            run(ds, rs)
        assert (info.value.would_delete, info.value.total, info.value.target) == (6, 10, "t")

    def test_deleting_up_to_the_share_is_allowed(self) -> None:
        """Five deletes of ten records are within half."""
        ds, rs = self._setup(10, 5)
        assert len(run(ds, rs).deletes) == 5

    def test_force_overrides_the_guard(self) -> None:
        """With force the same plan goes through."""
        ds, rs = self._setup(10, 0)
        assert len(run(ds, rs, guard=DeleteGuard(force=True)).deletes) == 10

    def test_small_targets_may_lose_most_objects(self) -> None:
        """Below the minimum record count the share is not enforced."""
        ds, rs = self._setup(5, 1)
        assert len(run(ds, rs).deletes) == 4

    def test_an_empty_desired_set_never_wipes_a_small_calendar(self) -> None:
        """An empty desired set deleting every one of three records is refused too."""
        ds, rs = self._setup(3, 0)
        with pytest.raises(MassDeleteRefused):
            run(ds, rs)

    def test_activities_the_crm_moved_away_may_empty_a_small_calendar(self) -> None:
        """With crm_moved_away (live activities, unchanged filter) deleting all three records passes."""
        ds, rs = self._setup(3, 0)
        assert len(run(ds, rs, guard=DeleteGuard(crm_moved_away=True)).deletes) == 3

    def test_moved_away_activities_still_weigh_against_the_share(self) -> None:
        """crm_moved_away lifts only the empty-set rule: deleting all ten of ten records is still refused."""
        ds, rs = self._setup(10, 0)
        with pytest.raises(MassDeleteRefused):
            run(ds, rs, guard=DeleteGuard(crm_moved_away=True))

    def test_the_last_single_object_may_go(self) -> None:
        """A target with one record may lose it."""
        ds, rs = self._setup(1, 0)
        assert len(run(ds, rs).deletes) == 1

    def test_total_records_weighs_the_whole_target_in_partial_plans(self) -> None:
        """A partial plan deleting six objects of a 100-object target passes with total_records."""
        _, rs = self._setup(6, 0)
        assert len(run([desired(50)], rs, total_records=100).deletes) == 6


class TestProperties:
    """Properties of the planner over random inputs."""

    @given(
        versions=st.dictionaries(st.integers(1, 30), st.integers(0, 3), max_size=15),
        pushed=st.dictionaries(st.integers(1, 30), st.integers(0, 3), max_size=15),
        seed=st.randoms(use_true_random=False),
    )
    def test_plan_is_deterministic_and_ignores_input_order(
        self, versions: dict[int, int], pushed: dict[int, int], seed: object
    ) -> None:
        """Shuffled inputs give the same plan, and each UID gets at most one write."""
        ds = [desired(i, version=v) for i, v in versions.items()]
        rs = [recorded(desired(i, version=v)) for i, v in pushed.items()]
        guard = DeleteGuard(force=True)
        p = run(ds, rs, guard=guard)
        ds2, rs2 = list(ds), list(rs)
        seed.shuffle(ds2)  # type: ignore[attr-defined]
        seed.shuffle(rs2)  # type: ignore[attr-defined]
        assert run(ds2, rs2, guard=guard) == p
        uids = [w.uid for w in p.writes]
        assert len(uids) == len(set(uids))
        assert {c.uid for c in p.creates} == {d.uid for d in ds} - {r.uid for r in rs}
        assert {d.uid for d in p.deletes} == {r.uid for r in rs} - {d.uid for d in ds}
        assert {u.uid for u in p.updates} == {
            d.uid for d in ds for r in rs if d.uid == r.uid and d.content_hash != r.pushed_hash
        }


class TestPurity:
    """The planner stays a pure layer."""

    def test_planner_imports_no_io_library(self) -> None:
        """Importing the planner loads none of httpx, caldav, sqlalchemy or apscheduler."""
        code = (
            "import sys, apexcal.sync.plan;"
            "bad = sorted(m for m in ('httpx', 'caldav', 'sqlalchemy', 'apscheduler') if m in sys.modules);"
            "print(','.join(bad))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        )
        assert out.stdout.strip() == ""
