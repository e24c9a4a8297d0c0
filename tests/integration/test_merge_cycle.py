"""The sync cycle merges: what a calendar user added to an apexcal object survives the CRM's next change.

On every server of the suite: clients add what they write to objects apexcal
wrote (Thunderbird's alarm, acknowledgement and snooze, Apple's travel
advisory and default alarm, Evolution's attendee and alarm, tasks.org's and
jtx's RELATED-TO, snoozes and comments); a CRM-side change of subject and
time then updates each object from the server's copy, so the additions stay
byte for byte while the owned content follows the CRM, the next cycle writes
nothing, and additions the user removed stay removed.
"""

from __future__ import annotations

import re

import pytest

from apexcal.ical.contentlines import parse
from apexcal.ical.ownership import canonical_line, main_component, owned_hash
from apexcal.ical.remote import read_remote
from tests.integration.test_merge_servers import _user_lines
from tests.integration.test_sync_cli import rad
from tests.integration.test_sync_support import Harness, harness, new_activity, new_task
from tests.unit.ical.client_shapes import APPLE, EVOLUTION, JTX, TASKS_ORG, THUNDERBIRD, add_shape

pytestmark = pytest.mark.caldav
__all__ = ["harness", "rad"]

# What a user's calendar app adds to an event (Thunderbird, Apple Calendar shapes).
USER_LINES = [
    "ATTENDEE;CN=Jane Roe;PARTSTAT=NEEDS-ACTION;ROLE=REQ-PARTICIPANT:mailto:jane@example.org",
    "X-MOZ-GENERATION:3",
    "X-APPLE-TRAVEL-ADVISORY-BEHAVIOR:AUTOMATIC",
]
USER_ALARM = [
    "BEGIN:VALARM",
    "ACTION:DISPLAY",
    "DESCRIPTION:My own reminder",
    "TRIGGER:-PT30M",
    "X-WR-ALARMUID:5A1B2C3D-user-alarm",
    "UID:5A1B2C3D-user-alarm",
    "END:VALARM",
]


def _with_user_additions(data: bytes) -> bytes:
    """``data`` as a calendar app saves it after the user added an attendee, X- properties and an alarm."""
    text = re.sub(r"\r?\n[ \t]", "", data.decode()).replace("\r\n", "\n").strip().split("\n")
    out: list[str] = []
    for line in text:
        if line in ("END:VEVENT", "END:VTODO"):
            out.extend(USER_LINES + USER_ALARM)
        out.append(line)
    return ("\r\n".join(out) + "\r\n").encode()


def _raw_user_lines(data: bytes) -> list[str]:
    """Every line of an object that is not apexcal's, as the server holds it (folding included), sorted."""
    return sorted(line.raw for line in _user_lines(data))


def _user_part(data: bytes) -> set[str]:
    """The user's lines of an object's VEVENT and its user alarm, in canonical form."""
    main = main_component(parse(data))
    assert main is not None
    lines = {
        repr(canonical_line(line))
        for line in main.lines()
        if line.name == "ATTENDEE" or line.name.startswith(("X-MOZ-", "X-APPLE-"))
    }
    for alarm in main.blocks("VALARM"):
        lines |= {repr(canonical_line(line)) for line in alarm.lines()}
    return lines


class TestMergeOnUpdate:
    """Updates start from the server's copy and replace only what apexcal owns."""

    def test_user_additions_survive_a_crm_change(self, harness: Harness) -> None:
        """What Thunderbird, Apple, Evolution, tasks.org and jtx add stays through a CRM change, and stays removed once removed."""
        meeting = new_activity(harness.emulator, subject="Quarterly review")
        task = new_task(harness.emulator)
        harness.add_target("a")
        harness.cycle("a")
        for aid, shapes in ((meeting, (THUNDERBIRD, APPLE, EVOLUTION)), (task, (TASKS_ORG, JTX))):
            obj = harness.object_of("a", aid)
            data = obj.data
            for shape in shapes:
                data = add_shape(data, shape)
            assert harness.put_raw("a", obj.href, data, obj.etag).status_code in (200, 201, 204)
        held = {aid: _raw_user_lines(harness.object_of("a", aid).data) for aid in (meeting, task)}
        assert all(len(lines) > 5 for lines in held.values())

        quiet = harness.cycle("a")  # the user's additions alone never cause a write
        assert (quiet.updated, harness.count("PUT")) == (0, 0)

        for aid in (meeting, task):
            harness.emulator.state.patch_activity(
                aid, {"subject": "Moved review", "start_time": "14:00:00", "end_time": "15:00:00"}
            )
        assert harness.cycle("a").updated == 2
        want = harness.expected("a")
        for aid in (meeting, task):
            stored = harness.object_of("a", aid).data
            assert b"Moved review" in stored
            assert owned_hash(stored) == owned_hash(want[read_remote("", stored).uid])
            assert _raw_user_lines(stored) == held[aid]  # byte for byte as the server held them

        again = harness.cycle("a")
        assert (again.updated, again.created, harness.count("PUT")) == (0, 0, 0)

        # The user removes what they had added; the CRM's next change does not bring it back.
        for aid in (meeting, task):
            current = harness.object_of("a", aid)
            bare = want[read_remote("", current.data).uid]
            assert harness.put_raw("a", current.href, bare, current.etag).status_code in (200, 201, 204)
            harness.emulator.state.patch_activity(aid, {"subject": "Final review"})
        assert harness.cycle("a").updated == 2
        assert [_raw_user_lines(harness.object_of("a", aid).data) for aid in (meeting, task)] == [[], []]


def _acknowledge_ours_and_add_own(data: bytes) -> bytes:
    """``data`` after a user dismissed apexcal's reminder (Apple's ACKNOWLEDGED) and added one of their own."""
    text = re.sub(r"\r?\n[ \t]", "", data.decode()).replace("\r\n", "\n").strip().split("\n")
    out: list[str] = []
    in_ours = False
    for line in text:
        if line.startswith("X-APEX-ALARM:"):
            in_ours = True
        if line == "END:VALARM" and in_ours:
            out.append("ACKNOWLEDGED:20250612T093012Z")
            in_ours = False
        if line in ("END:VEVENT", "END:VTODO"):
            out.extend(USER_ALARM)
        out.append(line)
    return ("\r\n".join(out) + "\r\n").encode()


def _alarms(data: bytes) -> dict[str, set[str]]:
    """The object's VALARMs by UID: their lines in canonical form."""
    main = main_component(parse(data))
    assert main is not None
    return {
        alarm.value("UID") or "": {repr(canonical_line(line)) for line in alarm.lines()}
        for alarm in main.blocks("VALARM")
    }


class TestReminders:
    """``alarms``: apexcal's reminders are its own; the user's and their acknowledgements stay."""

    def test_our_reminders_change_and_the_users_stay(self, rad: Harness) -> None:
        """A dismissed apexcal reminder stays dismissed through a CRM change; a new trigger replaces only ours.

        On Radicale only: what each server stores of our alarms is held to
        ``owned_hash`` on every server by ``test_merge_servers``.
        """
        aid = new_activity(rad.emulator, subject="Quarterly review")
        rad.mapping["alarms"] = {"default": ["-15m"], "call": ["-5m"]}
        rad.add_target("a")
        rad.cycle("a")
        obj = rad.object_of("a", aid)
        (ours,) = _alarms(obj.data)
        assert ours.startswith("apexcal-alarm-")
        assert rad.put_raw("a", obj.href, _acknowledge_ours_and_add_own(obj.data), obj.etag).status_code in (200, 201, 204)
        held = _alarms(rad.object_of("a", aid).data)
        assert any("ACKNOWLEDGED" in line for line in held[ours])

        rad.emulator.state.patch_activity(aid, {"subject": "Moved review", "start_time": "15:00:00", "end_time": "16:00:00"})
        assert rad.cycle("a").updated == 1
        assert _alarms(rad.object_of("a", aid).data) == {
            **held, ours: {line for line in held[ours] if "Quarterly" not in line} | {repr(("DESCRIPTION", (), "Moved review"))}
        }

        rad.targets["a"]["alarms"] = {"default": ["-30m"]}  # this target's own reminders
        assert rad.cycle("a").updated == 1
        after = _alarms(rad.object_of("a", aid).data)
        assert USER_ALARM[-2].removeprefix("UID:") in after  # the user's own reminder
        assert ours not in after
        (new,) = set(after) - {USER_ALARM[-2].removeprefix("UID:")}
        assert repr(("X-APEX-ALARM", (), "-30m")) in after[new]
        assert rad.cycle("a").updated == 0


class TestRacingEdits:
    """An update never overwrites what a client saved after the copy was read."""

    def test_an_edit_racing_the_update_is_merged_on_the_next_cycle(self, rad: Harness) -> None:
        """A client saving while a cycle runs: our PUT meets 412, nothing is overwritten, the next cycle merges into their copy.

        On Radicale only: the 412 path is the sink's and the planner's, held to
        every server by their own tests.
        """
        aid = new_activity(rad.emulator, subject="Quarterly review")
        rad.add_target("a")
        rad.cycle("a")
        rad.emulator.state.patch_activity(aid, {"subject": "Moved review"})
        saves: list[int] = []

        def client_saves(method: str, status: int) -> None:
            # After every read of the cycle, whichever one the copy came from.
            if method == "REPORT":
                obj = rad.object_of("a", aid)
                data = obj.data if saves else _with_user_additions(obj.data)
                data = re.sub(rb"X-MOZ-GENERATION:\d+", f"X-MOZ-GENERATION:{len(saves) + 3}".encode(), data)
                saves.append(rad.put_raw("a", obj.href, data, obj.etag).status_code)

        rad.hooks.append(client_saves)
        raced = rad.cycle("a")
        rad.hooks.clear()
        assert saves
        assert set(saves) <= {200, 201, 204}
        assert (raced.updated, raced.skipped) == (0, 1)
        added = _user_part(rad.object_of("a", aid).data)
        assert b"Moved review" not in rad.object_of("a", aid).data

        merged = rad.cycle("a")
        assert merged.updated == 1
        stored = rad.object_of("a", aid).data
        assert b"Moved review" in stored
        assert _user_part(stored) == added
        assert rad.cycle("a").updated == 0
        assert rad.count("PUT") == 0
