"""Command-line usage mistakes are operator errors: one line on stderr, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

APEXCAL = str(Path(sys.executable).with_name("apexcal"))


class TestUsageErrors:
    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["export", "--bogus"], "No such option: --bogus"),
            (["nope"], "No such command 'nope'"),
            (["sync"], "Missing option '--config'"),
        ],
        ids=["unknown option", "unknown command", "missing option"],
    )
    def test_usage_mistake_is_one_line_and_exit_2(self, args: list[str], expected: str) -> None:
        """Unknown options, commands and missing required options print one line naming --help."""
        result = subprocess.run(
            [APEXCAL, *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 1, lines
        assert expected in lines[0]
        assert "--help" in lines[0]
        assert result.stdout == ""

    def test_bare_command_shows_help(self) -> None:
        """`apexcal` alone prints its help, listing the commands."""
        result = subprocess.run([APEXCAL], capture_output=True, text=True, timeout=60, check=False)
        assert "sync" in result.stdout + result.stderr
        assert "export" in result.stdout + result.stderr
