"""``attendees`` on targets: off by default, only with full privacy, refused clearly by `config check`."""

from __future__ import annotations

from pathlib import Path

import pytest

from apexcal.config import config_from_dict
from apexcal.errors import ConfigError
from apexcal.feeds.build import feed_options
from apexcal.sync.desired import mapping_options as target_options
from tests.cli.test_config_check import check


def _config(target: dict[str, object]) -> object:
    return config_from_dict(
        {
            "source": {"organization_id": 27},
            "targets": [{"name": "jane", "url": "https://dav.example.com/jane/", **target}],
            "feeds": [{"name": "team", "path": "/tmp/team.ics", "privacy": "full"}],
        }
    )


class TestAttendeesSetting:
    def test_off_by_default_on_when_asked(self) -> None:
        config = config_from_dict(
            {
                "source": {"organization_id": 27},
                "targets": [
                    {"name": "jane", "url": "https://dav.example.com/jane/"},
                    {"name": "john", "url": "https://dav.example.com/john/", "attendees": True},
                ],
                "feeds": [{"name": "team", "path": "/tmp/team.ics", "privacy": "full"}],
            }
        )
        assert target_options(config, config.targets[0]).attendees is False
        assert target_options(config, config.targets[1]).attendees is True
        assert feed_options(config, config.feeds[0]).attendees is False  # feeds are shared files: never

    @pytest.mark.parametrize("privacy", ["public", "busy"])
    def test_refused_where_it_would_show_whom_an_activity_is_with(self, privacy: str) -> None:
        with pytest.raises(ConfigError, match='attendees = true needs privacy = "full"'):
            _config({"attendees": True, "privacy": privacy})

    def test_strict_boolean(self) -> None:
        with pytest.raises(ConfigError):
            _config({"attendees": "yes"})


def test_config_check_names_file_key_and_reason(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[source]\norganization_id = 27\n'
        '[[targets]]\nname = "jane"\nurl = "https://dav.example.com/jane/"\nprivacy = "busy"\nattendees = true\n'
        '[[feeds]]\nname = "team"\npath = "/tmp/team.ics"\nattendees = true\n',
        encoding="utf-8",
    )
    result = check(str(config))
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert 'attendees = true needs privacy = "full"' in result.stderr
    assert "feeds[0].attendees" in result.stderr  # not a feed setting
