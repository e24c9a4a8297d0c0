"""Loading a config directory: one organization per file, shared sections in apexcal.toml."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from apexcal.config import load_config
from apexcal.config.directory import load_config_dir
from apexcal.errors import ConfigError

ORG = """\
[source]
base_url = "http://127.0.0.1:9"
token = "t"
organization_id = {org}
{extra}
[[targets]]
name = "jane"
url = "http://127.0.0.1:9/jane/"

[[feeds]]
name = "team"
path = "feeds/{key}.ics"
"""

SHARED = """\
[state]
url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

[sync]
interval = "10s"
reconcile_interval = "2m"

[worker]
tick = "10s"
concurrency = 3

[log]
level = "debug"
"""


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def _org(directory: Path, key: str, org: int, extra: str = "") -> Path:
    return _write(directory, f"{key}.toml", ORG.format(org=org, key=key, extra=extra))


def _problems(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_dir(directory, env={})
    return [str(p) for p in info.value.problems]


class TestLoadConfigDir:
    def test_every_file_is_an_organization_keyed_by_its_stem(self, tmp_path: Path) -> None:
        """Each *.toml besides apexcal.toml is one organization with the shared sections merged in."""
        _write(tmp_path, "apexcal.toml", SHARED)
        _org(tmp_path, "acme", 1)
        _org(tmp_path, "beta", 2, extra='[sync]\ninterval = "1m"\n')
        loaded = load_config_dir(tmp_path, env={})
        assert list(loaded.organizations) == ["acme", "beta"]
        acme, beta = loaded.organization("acme"), loaded.organization("beta")
        assert acme.state.url == beta.state.url == loaded.state_url
        assert acme.sync.interval == timedelta(seconds=10)
        assert beta.sync.interval == timedelta(minutes=1)
        assert beta.sync.reconcile_interval == timedelta(minutes=2)  # shared default kept
        assert acme.log.level == "debug"
        assert acme.worker.concurrency == loaded.shared.worker.concurrency == 3
        assert acme.feeds[0].path == tmp_path / "feeds" / "acme.ics"
        assert acme.path == tmp_path / "acme.toml"

    def test_shared_file_is_optional(self, tmp_path: Path) -> None:
        """Without apexcal.toml every organization gets the defaults."""
        _org(tmp_path, "acme", 1)
        loaded = load_config_dir(tmp_path, env={})
        assert loaded.shared.worker.tick == timedelta(seconds=30)
        assert loaded.organization("acme").worker.metrics_listen is None

    def test_every_problem_names_its_file_and_key(self, tmp_path: Path) -> None:
        """Problems of several files are reported together, each with file and key path."""
        _write(tmp_path, "apexcal.toml", SHARED.replace('tick = "10s"', 'tick = "7s"'))
        _org(tmp_path, "acme", 1, extra='[sync]\nintervl = "5s"\n')
        _org(tmp_path, "beta", 2, extra='[state]\nurl = "sqlite:////tmp/x.db"\n')
        problems = _problems(tmp_path)
        assert any(p.startswith(f"{tmp_path / 'apexcal.toml'}: worker.tick: must divide") for p in problems)
        assert f"{tmp_path / 'acme.toml'}: sync.intervl: unknown key (did you mean 'interval'?)" in problems
        assert f"{tmp_path / 'beta.toml'}: state: [state] is shared: set it in apexcal.toml" in problems

    def test_shared_sync_problem_is_reported_once_against_the_shared_file(self, tmp_path: Path) -> None:
        """A bad shared [sync] value names apexcal.toml, not every organization file."""
        _write(tmp_path, "apexcal.toml", '[sync]\ninterval = "soon"\n')
        _org(tmp_path, "acme", 1)
        _org(tmp_path, "beta", 2)
        problems = _problems(tmp_path)
        assert len(problems) == 1
        assert problems[0].startswith(f"{tmp_path / 'apexcal.toml'}: sync.interval:")

    def test_two_files_for_one_api_organization_are_refused(self, tmp_path: Path) -> None:
        """Two files naming the same organization of the same API would share one mirror."""
        _org(tmp_path, "acme", 7)
        _org(tmp_path, "beta", 7)
        assert _problems(tmp_path) == [
            f"{tmp_path / 'beta.toml'}: source.organization_id: organization 7 of "
            f"http://127.0.0.1:9 is already configured in {tmp_path / 'acme.toml'}"
        ]

    def test_bad_organization_key_and_empty_directory(self, tmp_path: Path) -> None:
        """A file name that cannot be a key, and a directory without organizations, are problems."""
        assert _problems(tmp_path) == [
            f"{tmp_path}: no organization files (*.toml besides apexcal.toml)"
        ]
        _org(tmp_path, "acme corp", 1)
        assert "not a valid organization key" in _problems(tmp_path)[0]

    def test_missing_directory(self, tmp_path: Path) -> None:
        """A directory that does not exist is one problem naming it."""
        assert _problems(tmp_path / "nope") == [f"{tmp_path / 'nope'}: not found"]

    def test_single_file_config_keeps_working(self, tmp_path: Path) -> None:
        """--config FILE reads the same schema as before; [worker] has its defaults."""
        path = _org(tmp_path, "acme", 1)
        config = load_config(path, env={})
        assert config.worker.tick == timedelta(seconds=30)
        assert config.targets[0].name == "jane"


class TestConfigCheckDir:
    def _check(self, target: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "apexcal", "config", "check", str(target)],
            capture_output=True, text=True, timeout=60, check=False,
        )

    def test_valid_directory_prints_ok(self, tmp_path: Path) -> None:
        """`apexcal config check DIR` checks every file and prints ok."""
        _write(tmp_path, "apexcal.toml", SHARED)
        _org(tmp_path, "acme", 1)
        result = self._check(tmp_path)
        assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")

    def test_problems_of_every_file_exit_2(self, tmp_path: Path) -> None:
        """Each problem is one stderr line naming the file and key; exit 2."""
        _org(tmp_path, "acme", 1, extra='[worker]\ntick = "10s"\n')
        _org(tmp_path, "beta", 0)
        result = self._check(tmp_path)
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"{tmp_path / 'acme.toml'}: worker: [worker] is shared: set it in apexcal.toml",
            f"{tmp_path / 'beta.toml'}: source.organization_id: must be greater than 0",
        ]
