"""Two-way edits: moves, renames and new locations made in a calendar reach the CRM, field by field, once."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from apexcal.ical.ownership import owned_hash
from tests.integration.test_crash import CrashRig, KillingProxy, KillPlan, _method
from tests.integration.test_dry_run import _world
from tests.integration.test_sync_cli import rad, sync
from tests.integration.test_sync_support import Harness, harness, new_activity, new_task

__all__ = ["harness", "rad"]

EDITS = ["done", "start", "end", "subject", "location"]
DAY = "2027-01-15"  # winter: New York is UTC-5


def edit(data: bytes, drop: set[str], add: list[str]) -> bytes:
    """The object as a calendar app saves it after an edit: ``drop`` properties of its VEVENT/VTODO replaced by ``add``."""
    text = re.sub(r"\r?\n[ \t]", "", data.decode())
    out: list[str] = []
    depth = 0
    for line in text.splitlines():
        name = re.split("[;:]", line, maxsplit=1)[0].upper()
        if line in ("BEGIN:VEVENT", "BEGIN:VTODO"):
            depth = 1
        elif line.startswith("BEGIN:") and depth:
            depth += 1
        elif line.startswith("END:") and depth:
            depth -= 1
            if depth == 0:
                out.extend(add)
        elif depth == 1 and name in drop:
            continue
        out.append(line)
    return ("\r\n".join(out) + "\r\n").encode()


def client_edit(h: Harness, activity_id: int, drop: set[str], add: list[str], name: str = "a") -> None:
    obj = h.object_of(name, activity_id)
    stamp = ["LAST-MODIFIED:20990101T000000Z", "DTSTAMP:20990101T000000Z"]
    response = h.put_raw(name, obj.href, edit(obj.data, drop | {"LAST-MODIFIED", "DTSTAMP"}, [*add, *stamp]), obj.etag)
    assert response.status_code in (200, 201, 204), response.status_code


def patches(h: Harness) -> list[str]:
    return [line for line in h.emulator.admin.requests() if line.startswith("PATCH /activities")]


def crm(h: Harness, activity_id: int) -> dict[str, Any]:
    return dict(h.emulator.state.get(activity_id))


def settled(h: Harness, name: str = "a") -> None:
    """The next cycle writes nothing anywhere, and the calendar is what an uninterrupted sync gives."""
    h.emulator.admin.reset_counters()
    again = h.cycle(name)
    assert again.ok, again.errors
    assert (again.created, again.updated, again.deleted, again.written_back) == (0, 0, 0, 0)
    assert h.count("PUT") == 0
    assert patches(h) == []
    # What apexcal owns is what an uninterrupted sync of the CRM's state writes (Xandikos
    # re-orders the RRULE parts of a VTIMEZONE it stores, which no one owns, so compare owned parts).
    want = h.expected(name)
    held = {uid: objs[0].data for uid, objs in h.remote_by_uid(name).items()}
    assert set(held) == set(want)
    assert {u: owned_hash(d) for u, d in held.items()} == {u: owned_hash(d) for u, d in want.items()}


def meeting(h: Harness, **fields: Any) -> int:
    return new_activity(
        h.emulator, start_date=DAY, start_time="10:00:00", end_date=DAY, end_time="11:00:00", duration=60,
        location="Room 1", **fields,
    )


@pytest.fixture
def world(harness: Harness) -> Harness:
    harness.source = {"timezone": "America/New_York"}
    return harness


class TestEditsReachTheCrm:
    def test_moved_event_changes_the_activity_times_in_the_source_time_zone(self, world: Harness) -> None:
        """An event moved and lengthened in UTC by a client lands as New York wall times; the next cycle writes nothing."""
        act = meeting(world)
        world.add_target("a", writeback_fields=EDITS)
        world.cycle("a")
        client_edit(world, act, {"DTSTART", "DTEND"}, ["DTSTART:20270115T170000Z", "DTEND:20270115T183000Z"])
        world.emulator.admin.reset_counters()
        summary = world.cycle("a")
        assert summary.ok, summary.errors
        assert summary.written_back == 1
        got = crm(world, act)
        assert (got["start_date"], got["start_time"], got["end_date"], got["end_time"], got["duration"]) == (
            DAY, "12:00:00", DAY, "13:30:00", 90,
        )
        assert len(patches(world)) == 1
        assert got["subject"] == "Meeting"
        assert got["location"] == "Room 1"
        settled(world)

    def test_rename_and_new_location(self, world: Harness) -> None:
        """SUMMARY and LOCATION edited in the calendar become the subject and the location."""
        act = meeting(world)
        world.add_target("a", writeback_fields=EDITS)
        world.cycle("a")
        client_edit(world, act, {"SUMMARY", "LOCATION"}, ["SUMMARY:Kick-off\\, revised", "LOCATION:Room 7"])
        assert world.cycle("a").written_back == 1
        got = crm(world, act)
        assert (got["subject"], got["location"]) == ("Kick-off, revised", "Room 7")
        settled(world)

    def test_timed_to_all_day_and_back(self, world: Harness) -> None:
        """Made all-day: dates only in the CRM; made timed again: times again."""
        act = meeting(world)
        world.add_target("a", writeback_fields=EDITS)
        world.cycle("a")
        client_edit(world, act, {"DTSTART", "DTEND"}, ["DTSTART;VALUE=DATE:20270118", "DTEND;VALUE=DATE:20270120"])
        world.cycle("a")
        got = crm(world, act)
        assert (got["start_date"], got["start_time"], got["end_date"], got["end_time"]) == ("2027-01-18", None, "2027-01-19", None)
        settled(world)
        client_edit(
            world, act, {"DTSTART", "DTEND"},
            ["DTSTART;TZID=Europe/Berlin:20270118T150000", "DTEND;TZID=Europe/Berlin:20270118T160000"],
        )
        world.cycle("a")
        got = crm(world, act)
        assert (got["start_date"], got["start_time"], got["end_time"], got["duration"]) == ("2027-01-18", "09:00:00", "10:00:00", 60)
        settled(world)

    def test_todo_due_moved(self, world: Harness) -> None:
        """An all-day to-do's DUE moved: start and end dates follow."""
        task = new_task(world.emulator, start_date=DAY, start_time=None, end_date=DAY, end_time=None, duration=None)
        world.add_target("a", writeback_fields=EDITS)
        world.cycle("a")
        client_edit(world, task, {"DUE", "DTSTART"}, ["DUE;VALUE=DATE:20270122"])
        world.cycle("a")
        got = crm(world, task)
        assert (got["start_date"], got["end_date"], got["start_time"]) == ("2027-01-22", "2027-01-22", None)
        settled(world)


class TestMerge:
    @pytest.mark.parametrize(("policy", "subject"), [("crm-wins", "From the CRM"), ("calendar-wins", "From the calendar")])
    def test_same_field_on_both_sides_follows_the_policy(self, world: Harness, policy: str, subject: str) -> None:
        """Both renamed since the last cycle: the policy's side wins in the CRM and in the calendar."""
        world.sync = {"reconcile_interval": "1h", "conflict_policy": policy}
        act = meeting(world)
        world.add_target("a", writeback_fields=EDITS)
        world.cycle("a")
        client_edit(world, act, {"SUMMARY"}, ["SUMMARY:From the calendar"])
        world.emulator.state.patch_activity(act, {"subject": "From the CRM"})
        world.cycle("a")
        assert crm(world, act)["subject"] == subject
        assert f"SUMMARY:{subject}" in world.object_of("a", act).data.decode()
        settled(world)

    def test_different_fields_on_each_side_are_both_kept(self, world: Harness) -> None:
        """Renamed in the calendar, moved in the CRM: the activity and the event end with both."""
        act = meeting(world)
        world.add_target("a", writeback_fields=EDITS)
        world.cycle("a")
        client_edit(world, act, {"SUMMARY"}, ["SUMMARY:Renamed in the calendar"])
        world.emulator.state.patch_activity(act, {"start_time": "14:00:00", "end_time": "15:00:00"})
        world.cycle("a")
        got = crm(world, act)
        assert (got["subject"], got["start_time"]) == ("Renamed in the calendar", "14:00:00")
        text = world.object_of("a", act).data.decode()
        assert "SUMMARY:Renamed in the calendar" in text
        assert "DTSTART;TZID=America/New_York:20270115T140000" in text
        settled(world)


class TestLimits:
    def test_default_target_takes_only_completions(self, world: Harness) -> None:
        """Without writeback_fields a rename stays in the calendar until the CRM's next change reverts it."""
        act = meeting(world)
        world.add_target("a")
        world.cycle("a")
        client_edit(world, act, {"SUMMARY"}, ["SUMMARY:Renamed"])
        world.emulator.admin.reset_counters()
        world.cycle("a")
        assert patches(world) == []
        assert crm(world, act)["subject"] == "Meeting"

    def test_recurrence_added_is_reported_once_and_the_crm_left_alone(self, world: Harness) -> None:
        """An RRULE added in the calendar: a warning naming the object, once; no PATCH; a rename beside it still goes."""
        act = meeting(world)
        world.add_target("a", writeback_fields=EDITS)
        world.cycle("a")
        client_edit(world, act, {"SUMMARY"}, ["RRULE:FREQ=WEEKLY", "SUMMARY:Weekly now"])
        first = world.cycle("a")
        got = crm(world, act)
        assert got["subject"] == "Weekly now"
        assert (got["start_time"], got["end_time"]) == ("10:00:00", "11:00:00")
        assert any("RRULE added" in w for w in first.warnings), first.warnings
        # The rename's answer made apexcal write the object again: its own rendering, without the RRULE.
        assert "RRULE:FREQ=WEEKLY" not in world.object_of("a", act).data.decode()
        settled(world)

    def test_unknown_tzid_is_reported_once(self, world: Harness) -> None:
        """A DTSTART with a TZID no zone has: warned once, the CRM keeps its times."""
        act = meeting(world)
        world.add_target("a", writeback_fields=EDITS)
        world.cycle("a")
        client_edit(world, act, {"DTSTART", "DTEND"}, ["DTSTART;TZID=Mars/Olympus:20270115T120000", "DTEND;TZID=Mars/Olympus:20270115T130000"])
        world.emulator.admin.reset_counters()
        first = world.cycle("a")
        assert any("unknown TZID" in w for w in first.warnings), first.warnings
        assert patches(world) == []
        second = world.cycle("a")
        assert not any("unknown TZID" in w for w in second.warnings)
        assert crm(world, act)["start_time"] == "10:00:00"

    def test_unavailable_api_keeps_the_edit_until_it_is_taken(self, world: Harness) -> None:
        """A 503 on the PATCH: the cycle reports it, the next one sends the journaled edit."""
        act = meeting(world)
        world.add_target("a", writeback_fields=EDITS)
        world.cycle("a")
        client_edit(world, act, {"LOCATION"}, ["LOCATION:Room 9"])
        world.emulator.admin.fault("status", count=5, status=503, method="PATCH", path=f"/activities/{act}")
        failed = world.cycle("a")
        assert not failed.ok
        assert crm(world, act)["location"] == "Room 1"
        world.emulator.admin.clear_faults()
        assert world.cycle("a").written_back == 1
        assert crm(world, act)["location"] == "Room 9"
        settled(world)

    def test_refused_values_are_reported_not_retried_forever(self, world: Harness) -> None:
        """A 400 on the PATCH: one warning naming the activity; nothing is sent again."""
        act = meeting(world)
        world.add_target("a", writeback_fields=EDITS)
        world.cycle("a")
        client_edit(world, act, {"LOCATION"}, ["LOCATION:Room 9"])
        world.emulator.admin.fault("status", count=1, status=400, method="PATCH", path=f"/activities/{act}")
        first = world.cycle("a")
        assert any(f"activity {act}: the CRM refused" in w for w in first.warnings), first.warnings
        world.emulator.admin.reset_counters()
        again = world.cycle("a")
        assert again.ok
        assert patches(world) == []
        assert crm(world, act)["location"] == "Room 1"

    def test_record_without_baseline_writes_nothing_back(self, world: Harness) -> None:
        """Turned on for a target synced before: an edit already made is not taken; the next edit is."""
        act = meeting(world)
        world.add_target("a")
        world.cycle("a")
        client_edit(world, act, {"SUMMARY"}, ["SUMMARY:Before"])
        world.targets["a"]["writeback_fields"] = EDITS
        world.emulator.admin.reset_counters()
        world.cycle("a")
        assert patches(world) == []
        client_edit(world, act, {"SUMMARY"}, ["SUMMARY:After"])
        world.cycle("a")
        assert crm(world, act)["subject"] == "After"
        settled(world)


# --- crash safety ------------------------------------------------------------------------------




@pytest.fixture
def rig(harness: Harness) -> Iterator[CrashRig]:
    """The crash rig of tests/integration/test_crash.py, on a target taking every edit back."""
    api = KillingProxy(upstream=harness.emulator.base_url)
    dav = KillingProxy(upstream=harness.server.base_url.rstrip("/"))
    api_gen, dav_gen = api.serve(), dav.serve()
    api_url, dav_url = next(api_gen), next(dav_gen)
    url = harness.add_target("a", writeback_fields=EDITS)
    config = harness.config_file(base_url=api_url, urls={"a": url.replace(harness.server.base_url.rstrip("/"), dav_url)})
    try:
        yield CrashRig(h=harness, api=api, dav=dav, config=config)
    finally:
        for gen in (api_gen, dav_gen):
            gen.close()


def _patch_of(activity_id: int) -> Any:
    return lambda method, path: method == "PATCH" and path.startswith(f"/activities/{activity_id}")


def _reread_after_patch() -> Any:
    """The first GET /activities after a PATCH went through: the re-read of what was written back."""
    patched = False

    def match(method: str, path: str) -> bool:
        nonlocal patched
        if method == "PATCH":
            patched = True
            return False
        return patched and method == "GET" and path.startswith("/activities")

    return match


@pytest.mark.slow
class TestCrashSafety:
    def test_killed_around_each_field_patch_converges_with_one_effect_each(self, rig: CrashRig) -> None:
        """Killed before a PATCH, after it (answer lost) and at the re-read: every edit reaches the CRM, each applied once."""
        h = rig.h
        acts = [meeting(h, subject=f"Visit {i}") for i in range(3)]
        assert h.cycle("a").created == 3
        for round_ in (1, 2):
            for i, act in enumerate(acts):
                client_edit(
                    h, act, {"SUMMARY", "DTSTART", "DTEND"},
                    [f"SUMMARY:Visit {i} moved {round_}", f"DTSTART:2027011{round_}T0{i}0000Z", f"DTEND:2027011{round_}T0{i}3000Z"],
                )
            h.emulator.admin.reset_counters()
            if round_ == 1:
                rig.run(KillPlan(match=_method("PATCH"), at=1, before=True), rig.api)  # never sent
                rig.run(KillPlan(match=_method("PATCH"), at=2, before=False), rig.api)  # applied, answer lost
            else:
                rig.run(KillPlan(match=_reread_after_patch(), at=1, before=True), rig.api)  # answered, not re-read
            rig.converge()
            for i, act in enumerate(acts):
                got = crm(h, act)
                assert (got["subject"], got["start_date"], got["start_time"], got["end_time"]) == (
                    f"Visit {i} moved {round_}", f"2027-01-1{round_}", f"0{i}:00:00", f"0{i}:30:00",
                ), rig.kills
                sent = [line for line in patches(h) if line.split("?")[0] == f"PATCH /activities/{act}"]
                assert len(sent) == 1, (act, patches(h), rig.kills)

    @pytest.mark.parametrize("caldav_server", ["radicale"], indirect=True)
    def test_killed_waiting_for_the_answer_keeps_a_later_crm_change(self, rig: CrashRig) -> None:
        """Killed after the API applied the PATCH, before its answer; the CRM user renames again: that change wins, unsent again."""
        h = rig.h
        act = meeting(h)
        assert h.cycle("a").created == 1
        client_edit(h, act, {"SUMMARY"}, ["SUMMARY:From the calendar"])
        rig.run(KillPlan(match=_patch_of(act), at=1, before=False), rig.api)
        assert crm(h, act)["subject"] == "From the calendar"
        h.emulator.state.patch_activity(act, {"subject": "Later, from the CRM"})
        h.emulator.admin.reset_counters()
        done = rig.run()
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        assert patches(h) == []
        assert crm(h, act)["subject"] == "Later, from the CRM"
        assert "SUMMARY:Later\\, from the CRM" in h.object_of("a", act).data.decode()
        rig.converge()


# --- dry run ------------------------------------------------------------------------------------




class TestDryRun:
    def test_dry_run_lists_field_writebacks_with_the_crm_fields_and_changes_nothing(self, rad: Harness) -> None:
        """`apexcal sync --dry-run` names the activity and each API field it would PATCH; nothing is written; a cycle then does it."""
        rad.source = {"timezone": "America/New_York"}
        act = meeting(rad)
        rad.add_target("a", writeback_fields=EDITS)
        rad.cycle("a")
        client_edit(rad, act, {"SUMMARY", "DTSTART", "DTEND"}, ["SUMMARY:Renamed", "DTSTART:20270115T170000Z", "DTEND:20270115T180000Z"])
        config = rad.config_file()
        before = _world(rad)
        result = sync(config, "--dry-run", "--json")
        assert result.returncode == 0, result.stderr
        (plan,) = json.loads(result.stdout)["targets"]
        assert plan["writebacks"] == [
            {
                "activity_id": act,
                "fields": {
                    "start_date": DAY, "start_time": "12:00:00", "end_date": DAY, "end_time": "13:00:00",
                    "duration": 60, "subject": "Renamed",
                },
                "pending": False,
            }
        ]
        text = sync(config, "--dry-run")
        assert text.returncode == 0, text.stderr
        assert f'write back activity {act}: start_date="{DAY}", start_time="12:00:00"' in text.stdout
        assert 'subject="Renamed"' in text.stdout
        assert _world(rad) == before
        assert rad.cycle("a").written_back == 1
        assert crm(rad, act)["subject"] == "Renamed"
