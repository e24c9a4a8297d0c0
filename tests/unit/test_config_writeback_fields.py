"""``writeback_fields`` on targets: completion only by default, edits only with full privacy."""

from __future__ import annotations

from pathlib import Path

import pytest

from apexcal.config import config_from_dict
from apexcal.config.models import Config
from apexcal.errors import ConfigError
from tests.cli.test_config_check import check


def _config(**target: object) -> Config:
    return config_from_dict(
        {
            "source": {"organization_id": 27},
            "targets": [{"name": "jane", "url": "https://dav.example.com/jane/", **target}],
        }
    )


class TestWritebackFieldsSetting:
    def test_completion_only_by_default(self) -> None:
        """Without the key a target takes only completions back."""
        assert _config().targets[0].writeback_fields == ["done"]

    def test_fields_are_kept_in_canonical_order(self) -> None:
        """Any order is accepted; duplicates collapse."""
        target = _config(writeback_fields=["location", "start", "done", "start"]).targets[0]
        assert target.writeback_fields == ["done", "start", "location"]

    def test_unknown_field_is_named(self) -> None:
        """A typo names the field and the ones known."""
        with pytest.raises(ConfigError, match="unknown field 'notes'"):
            _config(writeback_fields=["notes"])

    @pytest.mark.parametrize("privacy", ["public", "busy"])
    def test_edits_need_full_privacy(self, privacy: str) -> None:
        """A public or busy calendar does not show the true values: its edits never go back."""
        with pytest.raises(ConfigError, match='writeback_fields "start", "subject" needs privacy = "full"'):
            _config(privacy=privacy, writeback_fields=["done", "start", "subject"])

    @pytest.mark.parametrize("privacy", ["public", "busy"])
    def test_completion_alone_is_fine_anywhere(self, privacy: str) -> None:
        """Completion is true in every privacy level."""
        assert _config(privacy=privacy, writeback_fields=["done"]).targets[0].writeback_fields == ["done"]


def test_config_check_refuses_edits_on_a_busy_target_naming_target_and_key(tmp_path: Path) -> None:
    """`apexcal config check` prints the file, the target's key path, the target's name and the key."""
    config = tmp_path / "config.toml"
    config.write_text(
        '[source]\norganization_id = 27\n'
        '[[targets]]\nname = "jane"\nurl = "https://dav.example.com/jane/"\n'
        '[[targets]]\nname = "board"\nurl = "https://dav.example.com/board/"\nprivacy = "busy"\n'
        'writeback_fields = ["done", "start", "end"]\n',
        encoding="utf-8",
    )
    result = check(str(config))
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert "targets[1]" in result.stderr
    assert 'writeback_fields "start", "end" needs privacy = "full" (target "board" has privacy = "busy"' in result.stderr
