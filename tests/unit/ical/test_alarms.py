"""apexcal's reminders per activity type: triggers → VALARMs with a stable RFC 9074 UID and our marker."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from icalendar import Alarm

from apexcal.ical.alarms import Trigger, TriggerError, alarm_uid, alarms_for, parse_trigger
from apexcal.ical.contentlines import parse
from apexcal.ical.mapping import MappingOptions, calendar_bytes, map_activity
from apexcal.ical.merge import merge
from apexcal.ical.ownership import is_apex_alarm, main_component, owned_hash
from tests.unit.ical.client_shapes import APPLE, THUNDERBIRD, add_shape
from tests.unit.ical.factories import TYPES, activity
from tests.unit.ical.parsers import parse_both

NY = MappingOptions(timezone="America/New_York")


def with_alarms(triggers: list[str], opts: MappingOptions = NY, **fields: object) -> bytes:
    """The mapping's object for an activity with our alarms added, as the mapping will add them."""
    component = map_activity(activity(**fields), TYPES, opts)
    for alarm in alarms_for(component, triggers, timezone=opts.timezone):
        component.add_component(alarm)
    return calendar_bytes(component, opts.timezone)


def triggers_of(data: bytes) -> list[str]:
    """The TRIGGER lines of the object's VALARMs, as written."""
    main = main_component(parse(data))
    assert main is not None
    return [line.text for alarm in main.blocks("VALARM") for line in alarm.lines() if line.name == "TRIGGER"]


class TestParseTrigger:
    """Trigger text as written in the config."""

    @pytest.mark.parametrize(
        ("text", "offset", "key"),
        [
            ("-15m", timedelta(minutes=-15), "-15m"),
            ("-60m", timedelta(hours=-1), "-1h"),
            ("-1h30m", timedelta(minutes=-90), "-1h30m"),
            (" -2D ", timedelta(days=-2), "-2d"),
            ("-1w", timedelta(weeks=-1), "-1w"),
            ("+10m", timedelta(minutes=10), "+10m"),
            ("0m", timedelta(0), "0m"),
            ("-0m", timedelta(0), "0m"),
        ],
    )
    def test_relative(self, text: str, offset: timedelta, key: str) -> None:
        """Signed offsets in weeks, days, hours and minutes, with one canonical form."""
        trigger = parse_trigger(text)
        assert trigger.offset == offset
        assert trigger.key == key

    @pytest.mark.parametrize(("text", "key"), [("09:00", "09:00"), ("9:05", "09:05"), ("23:59", "23:59")])
    def test_absolute(self, text: str, key: str) -> None:
        """A time of day on the due day."""
        assert parse_trigger(text).key == key

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("15m", 'say which side: "-15m" before or "+15m" after'),
            ("-15", "write an offset"),
            ("soon", "write an offset"),
            ("24:00", "not a time of day"),
            ("09:60", "not a time of day"),
            ("-53w", "more than 52 weeks away"),
            ("", "write an offset"),
        ],
    )
    def test_bad_trigger_is_a_clear_error(self, text: str, reason: str) -> None:
        """A bad trigger names itself and what to write instead (a ValueError for config validation)."""
        with pytest.raises(TriggerError, match=re.escape(reason)) as info:
            parse_trigger(text)
        assert isinstance(info.value, ValueError)
        assert repr(text) in str(info.value)

    @settings(max_examples=100, deadline=None)
    @given(minutes=st.integers(-52 * 10080, 52 * 10080))
    def test_key_reads_back_to_the_same_offset(self, minutes: int) -> None:
        """The canonical key parses back to the same trigger."""
        trigger = Trigger(offset=timedelta(minutes=minutes))
        assert parse_trigger(trigger.key) == trigger


class TestAlarmsFor:
    """VALARMs for a mapped component."""

    def test_event_relative_to_start(self) -> None:
        """An event's relative alarm is RELATED=START, carries our marker and a deterministic UID."""
        data = with_alarms(["-15m"])
        main = main_component(parse(data))
        assert main is not None
        alarm = next(main.blocks("VALARM"))
        assert is_apex_alarm(alarm)
        assert alarm.value("ACTION") == "DISPLAY"
        assert alarm.value("DESCRIPTION") == "Quarterly review"
        assert alarm.value("X-APEX-ALARM") == "-15m"
        assert alarm.value("UID") == alarm_uid("apexcal-27-101@api.achieveapex.com", parse_trigger("-15m"))
        assert triggers_of(data) == ["TRIGGER;RELATED=START:-PT15M"]
        parse_both(data)

    def test_todo_relative_to_due(self) -> None:
        """A to-do's relative alarm counts from its DUE (RELATED=END, RFC 5545 §3.2.14)."""
        data = with_alarms(["-5m"], activity_type="task")
        assert triggers_of(data) == ["TRIGGER;RELATED=END:-PT5M"]
        parse_both(data)

    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            # all-day to-do due 2025-06-12: 09:00 New York (EDT) is 13:00 UTC
            ({"activity_type": "task", "start_time": None}, "20250612T130000Z"),
            # multi-day all-day to-do: the due (last) day
            ({"activity_type": "task", "start_time": None, "end_date": "2025-06-14"}, "20250614T130000Z"),
            # timed to-do due 2025-06-12 11:00 local
            ({"activity_type": "task"}, "20250612T130000Z"),
            # winter: EST, 14:00 UTC
            ({"activity_type": "task", "start_date": "2025-01-15", "end_date": "2025-01-15"}, "20250115T140000Z"),
            # an event: its start day
            ({}, "20250612T130000Z"),
        ],
    )
    def test_absolute_on_the_due_day_in_the_source_zone(self, fields: dict[str, object], expected: str) -> None:
        """"09:00" is 09:00 wall time in the source zone on the due day, written in UTC."""
        data = with_alarms(["09:00"], **fields)
        assert triggers_of(data) == [f"TRIGGER;VALUE=DATE-TIME:{expected}"]
        parse_both(data)

    def test_absolute_in_the_dst_gap_moves_forward(self) -> None:
        """02:30 on the spring-forward night does not exist in New York; it means 03:30 EDT (07:30 UTC)."""
        data = with_alarms(["02:30"], activity_type="task", start_date="2025-03-09", end_date="2025-03-09", start_time=None)
        assert triggers_of(data) == ["TRIGGER;VALUE=DATE-TIME:20250309T073000Z"]

    def test_utc_source(self) -> None:
        """With a UTC source the wall time is UTC."""
        data = with_alarms(["09:00"], MappingOptions(timezone="UTC"), activity_type="task", start_time=None)
        assert triggers_of(data) == ["TRIGGER;VALUE=DATE-TIME:20250612T090000Z"]

    def test_undated_todo_gets_none(self) -> None:
        """A to-do without dates has nothing to remind of."""
        component = map_activity(
            activity(activity_type="task", start_date=None, end_date=None, start_time=None, end_time=None), TYPES, NY
        )
        assert alarms_for(component, ["-15m", "09:00"], timezone="America/New_York") == []

    def test_duplicates_give_one_alarm_in_order(self) -> None:
        """-60m and -1h are one alarm; order follows the configuration."""
        component = map_activity(activity(), TYPES, NY)
        alarms = alarms_for(component, ["-1h", "-15m", "-60m"], timezone="America/New_York")
        assert [str(a["X-APEX-ALARM"]) for a in alarms] == ["-1h", "-15m"]
        assert all(isinstance(a, Alarm) for a in alarms)

    def test_uids_are_stable_and_distinct(self) -> None:
        """Same activity and trigger → same UID in every rendering; another trigger or activity → another."""
        a = alarm_uid("apexcal-27-101@x.example", parse_trigger("-15m"))
        assert a == alarm_uid("apexcal-27-101@x.example", parse_trigger("-15m"))
        assert a.startswith("apexcal-alarm-")
        assert a.endswith("@x.example")
        assert a != alarm_uid("apexcal-27-101@x.example", parse_trigger("-10m"))
        assert a != alarm_uid("apexcal-27-102@x.example", parse_trigger("-15m"))
        assert with_alarms(["-15m"]) == with_alarms(["-15m"])

    def test_busy_alarm_says_busy(self) -> None:
        """Under busy privacy the alarm text is the summary shown, "Busy"."""
        data = with_alarms(["-15m"], MappingOptions(timezone="UTC", privacy="busy"))
        assert b"DESCRIPTION:Busy" in data


class TestAlarmsMerge:
    """Our alarms through a merge: the user's acknowledgement survives, the user's alarms are untouched."""

    def test_acknowledged_alarm_survives_a_crm_change(self) -> None:
        """A client acknowledged our alarm; the activity moves; the alarm moves and keeps ACKNOWLEDGED."""
        first = with_alarms(["-15m"])
        acked = first.replace(b"X-APEX-ALARM:-15m\r\n", b"X-APEX-ALARM:-15m\r\nACKNOWLEDGED:20250612T134501Z\r\n")
        current = add_shape(acked, THUNDERBIRD)
        desired = with_alarms(["-15m"], start_time="15:00:00", end_time="16:00:00", updated_at="2025-06-02T00:00:00Z")
        merged = merge(current, desired)
        assert b"ACKNOWLEDGED:20250612T134501Z" in merged
        assert b"DTSTART;TZID=America/New_York:20250612T150000" in merged
        assert b"Default Mozilla Description" in merged
        assert owned_hash(merged) == owned_hash(desired)
        parse_both(merged)

    def test_changed_configuration_replaces_only_our_alarms(self) -> None:
        """Going from ["-15m"] to ["-5m", "09:00"] removes our -15m, adds two, keeps the Apple alarm."""
        current = add_shape(with_alarms(["-15m"]), APPLE)
        merged = merge(current, with_alarms(["-5m", "09:00"]))
        assert sorted(triggers_of(merged)) == sorted(
            ["TRIGGER;RELATED=START:-PT5M", "TRIGGER;VALUE=DATE-TIME:20250612T130000Z", "TRIGGER:-PT30M"]
        )
        assert merge(merged, with_alarms([])) == merge(current, with_alarms([]))

    def test_removing_all_our_alarms_keeps_the_users(self) -> None:
        """An empty trigger list removes our alarms and nothing else."""
        current = add_shape(with_alarms(["-15m", "09:00"]), APPLE)
        merged = merge(current, with_alarms([]))
        assert triggers_of(merged) == ["TRIGGER:-PT30M"]

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        old=st.lists(st.sampled_from(["-15m", "-1h", "0m", "+5m", "09:00", "17:30", "-1d"]), max_size=3),
        new=st.lists(st.sampled_from(["-15m", "-1h", "0m", "+5m", "09:00", "17:30", "-1d"]), max_size=3),
        task=st.booleans(),
    )
    def test_any_configuration_change(self, old: list[str], new: list[str], task: bool) -> None:
        """Our alarms end up exactly the new set; the user's alarms stay; the result is idempotent and valid."""
        fields = {"activity_type": "task"} if task else {}
        current = add_shape(with_alarms(old, **fields), THUNDERBIRD)
        desired = with_alarms(new, **fields)
        merged = merge(current, desired)
        main = main_component(parse(merged))
        assert main is not None
        ours = sorted(a.value("X-APEX-ALARM") or "" for a in main.blocks("VALARM") if is_apex_alarm(a))
        assert ours == sorted({parse_trigger(t).key for t in new})
        assert b"Default Mozilla Description" in merged
        assert merge(merged, desired) == merged
        parse_both(merged)


def test_trigger_instants_are_utc() -> None:
    """Absolute triggers are UTC date-times (RFC 5545 §3.8.6.3)."""
    component = map_activity(activity(activity_type="task", start_time=None), TYPES, NY)
    (alarm,) = alarms_for(component, ["09:00"], timezone="America/New_York")
    assert alarm.decoded("TRIGGER") == datetime(2025, 6, 12, 13, 0, tzinfo=UTC)
