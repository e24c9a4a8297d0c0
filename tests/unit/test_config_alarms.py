"""``[mapping.alarms]`` and the per-target/per-feed ``alarms``: validated at load, turned into mapping options."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from apexcal.config import Config, config_from_dict
from apexcal.config.mapping import mapping_options
from apexcal.feeds.build import feed_options
from apexcal.ical.alarms import parse_trigger
from apexcal.ical.contentlines import parse
from apexcal.ical.mapping import MappingOptions, object_for
from apexcal.ical.ownership import is_apex_alarm, main_component
from apexcal.sync.desired import mapping_options as target_options
from tests.cli.test_config_check import check
from tests.unit.ical.factories import TYPES, activity


def _config(
    alarms: dict[str, object], target: dict[str, object] | None = None, feed: dict[str, object] | None = None
) -> Config:
    return config_from_dict(
        {
            "source": {"organization_id": 27},
            "mapping": {"alarms": alarms},
            "targets": [{"name": "jane", "url": "https://dav.example.com/jane/", **(target or {})}],
            "feeds": [{"name": "team", "path": "/tmp/team.ics", **(feed or {})}],
        }
    )


def _triggers(data: bytes) -> list[str]:
    main = main_component(parse(data))
    assert main is not None
    return [a.value("X-APEX-ALARM") or "" for a in main.blocks("VALARM") if is_apex_alarm(a)]


class TestAlarmSettings:
    """Which reminders a target or feed writes."""

    def test_targets_use_the_mapping_table_feeds_opt_in(self) -> None:
        """A target takes [mapping.alarms] (canonical triggers); a feed has none until it says so."""
        config = _config({"default": ["-PT15M"], "call": ["-5m", "-PT300S"]})
        jane = target_options(config, config.targets[0])
        assert jane.alarms == (("call", ("-5m",)), ("default", ("-15m",)))
        assert feed_options(config, config.feeds[0]).alarms == ()
        opted = _config({"default": ["-15m"]}, feed={"alarms": True})
        assert feed_options(opted, opted.feeds[0]).alarms == (("default", ("-15m",)),)

    def test_a_target_table_replaces_the_mapping_table_and_false_turns_them_off(self) -> None:
        """A target's own table replaces [mapping.alarms]; ``false`` writes none."""
        own = _config({"default": ["-15m"]}, target={"alarms": {"meeting": ["-1h", "09:00"]}})
        assert target_options(own, own.targets[0]).alarms == (("meeting", ("-1h", "09:00")),)
        off = _config({"default": ["-15m"]}, target={"alarms": False})
        assert target_options(off, off.targets[0]).alarms == ()

    def test_reminders_follow_the_type_and_skip_done_activities(self) -> None:
        """A type's own triggers, the default for the others, none on a done activity."""
        config = _config({"default": ["-15m"], "call": ["-5m"], "task": ["09:00"]})
        options = mapping_options(config, privacy="full", tasks_as="todos", alarms=True)
        meeting = object_for(activity(activity_type="meeting"), TYPES, options).data
        call = object_for(activity(activity_type="call"), TYPES, options).data
        task = object_for(activity(activity_type="task", subject="Send"), TYPES, options).data
        done = object_for(activity(activity_type="call", done=True), TYPES, options).data
        assert (_triggers(meeting), _triggers(call), _triggers(task), _triggers(done)) == (
            ["-15m"], ["-5m"], ["09:00"], []
        )

    def test_no_table_maps_as_before(self) -> None:
        """Without reminders configured an object is byte for byte what it was."""
        config = _config({})
        options = mapping_options(config, privacy="full", tasks_as="todos", alarms=True)
        plain = MappingOptions(timezone=options.timezone, uid_domain=options.uid_domain)
        assert object_for(activity(), TYPES, options).data == object_for(activity(), TYPES, plain).data


class TestTriggerForms:
    @given(minutes=st.integers(min_value=1, max_value=52 * 7 * 24 * 60), before=st.booleans())
    def test_rfc5545_durations_read_like_the_short_form(self, minutes: int, before: bool) -> None:
        """``-PT90M``, ``-P1DT2H`` and ``-PT5400S`` are the same trigger as ``-1h30m``."""
        sign = "-" if before else "+"
        short = parse_trigger(f"{sign}{minutes}m").key
        days, rest = divmod(minutes, 1440)
        assert parse_trigger(f"{sign}PT{minutes}M").key == short
        assert parse_trigger(f"{sign}PT{minutes * 60}S").key == short
        assert parse_trigger(f"{sign}P{days}DT{rest // 60}H{rest % 60}M").key == short


class TestConfigCheck:
    def test_bad_reminders_name_file_key_and_value(self, tmp_path: Path) -> None:
        """`apexcal config check` reports each bad reminder on one line naming the file, the key and the text."""
        config = tmp_path / "config.toml"
        config.write_text(
            '[source]\norganization_id = 27\n'
            '[mapping.alarms]\ndefault = ["-PT15M"]\ncall = ["15m"]\nMeeting = ["-5m"]\ntask = "09:00"\n'
            '[[targets]]\nname = "jane"\nurl = "https://dav.example.com/jane/"\nalarms = { meeting = ["25:00"] }\n'
            '[[feeds]]\nname = "team"\npath = "/tmp/team.ics"\nalarms = "yes"\n',
            encoding="utf-8",
        )
        result = check(str(config))
        assert result.returncode == 2
        assert sorted(result.stderr.splitlines()) == sorted([
            f"{config}: mapping.alarms.Meeting.[key]: 'Meeting' is neither 'default' nor an activity type key "
            "(lowercase, e.g. 'call')",
            f'{config}: mapping.alarms.call: reminder \'15m\': say which side: "-15m" before or "+15m" after',
            f'{config}: mapping.alarms.task: must be a list of reminders, e.g. ["-15m", "-1d", "09:00"]',
            f"{config}: targets[0].alarms: meeting: reminder '25:00': not a time of day (HH:MM, 00:00 to 23:59)",
            f"{config}: feeds[0].alarms: must be true, false or a table of reminders (type key → list)",
        ])
