"""`apexcal config check FILE [--secrets]`, run as the real console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
APEXCAL = Path(sys.executable).with_name("apexcal")


def check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `apexcal config check ARGS` with a clean environment (no APEXCAL_* or credentials)."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("APEXCAL_") and k not in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY")
    }
    return subprocess.run(
        [str(APEXCAL), "config", "check", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
        check=False,
    )


class TestConfigCheck:
    def test_example_config_prints_ok(self) -> None:
        """The shipped example passes: `ok` on stdout, nothing on stderr, exit 0."""
        result = check(str(EXAMPLE))
        assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")

    def test_every_problem_is_one_stderr_line(self, tmp_path: Path) -> None:
        """A broken file gives one `FILE: key.path: message` line per problem and exit 2, no traceback."""
        config = tmp_path / "config.toml"
        config.write_text(
            '[source]\norganization_id = 27\ntimezone = "Mars/Base"\n'
            '[[targets]]\nname = "jane"\nurl = "not a url"\npassword = "hunter2-hunter2"\n'
            "[targets.filter]\nowner = 46\n",
            encoding="utf-8",
        )
        result = check(str(config))
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.splitlines() == [
            f"{config}: source.timezone: 'Mars/Base' is not a known IANA time zone (e.g. 'Europe/Berlin')",
            f"{config}: targets[0].url: not a valid URL",
            f"{config}: targets[0].filter.owner: unknown filter key; allowed: assigned_to_user_id, "
            "created_by_user_id, deal_id, contact_id, company_id, activity_type, done, start_date, subject",
        ]
        assert "hunter2" not in result.stderr

    def test_missing_file_and_syntax_error_are_one_line_each(self, tmp_path: Path) -> None:
        """A missing file and a TOML syntax error each print one line and exit 2."""
        missing = check("missing.toml")
        assert (missing.returncode, missing.stderr) == (2, "missing.toml: file not found\n")
        broken = tmp_path / "broken.toml"
        broken.write_text("[source\norganization_id = 27\n", encoding="utf-8")
        result = check(str(broken))
        assert result.returncode == 2
        assert result.stderr == (
            f"{broken}: invalid TOML at line 1, column 8: expected ']' at the end of a table declaration\n"
        )

    def test_secrets_flag_reads_secret_files(self, tmp_path: Path) -> None:
        """With --secrets an unreadable password_file is reported by key and path; readable ones pass."""
        missing = tmp_path / "jane.pw"
        config = tmp_path / "config.toml"
        config.write_text(
            '[source]\norganization_id = 27\n[[targets]]\nname = "jane"\n'
            f'url = "https://dav.example/jane/"\nusername = "jane"\npassword_file = "{missing}"\n',
            encoding="utf-8",
        )
        result = check(str(config), "--secrets", env={"APEXCAL_TOKEN": "token-from-env"})
        assert result.returncode == 2
        assert result.stderr == (
            f"{config}: targets[0].password_file: cannot read {missing}: No such file or directory\n"
        )
        missing.write_text("dav-secret-value\n", encoding="utf-8")
        result = check(str(config), "--secrets", env={"APEXCAL_TOKEN": "token-from-env"})
        assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")

    def test_environment_overrides_are_checked(self) -> None:
        """A bad APEXCAL_<SECTION>__<KEY> override fails the check and names its variable."""
        result = check(str(EXAMPLE), env={"APEXCAL_SYNC__INTERVAL": "sometimes"})
        assert result.returncode == 2
        assert result.stderr.startswith(f"{EXAMPLE}: sync.interval: not a duration")
        assert result.stderr.rstrip().endswith("(from APEXCAL_SYNC__INTERVAL)")


class TestConfigSchema:
    def test_schema_prints_the_generated_example(self, tmp_path: Path) -> None:
        """`apexcal config schema` prints the example generated from the schema, which `config check` accepts."""
        from apexcal.config.schema import example_toml

        result = subprocess.run(
            [str(APEXCAL), "config", "schema"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (result.returncode, result.stdout, result.stderr) == (0, example_toml(), "")
        generated = tmp_path / "generated.toml"
        generated.write_text(result.stdout, encoding="utf-8")
        checked = check(str(generated))
        assert (checked.returncode, checked.stdout, checked.stderr) == (0, "ok\n", "")


class TestSharedAccount:
    def test_two_targets_of_one_account_with_overlapping_filters_warn(self, tmp_path: Path) -> None:
        """Two targets with one host and user name and no disjoint filter: one warning line, still ok."""
        second = (
            '\n[[targets]]\nname = "jane-team"\nurl = "https://dav.example.com/calendars/jane/team/"\n'
            'username = "jane"\npassword_file = "/run/credentials/apexcal.service/jane-dav"\n'
        )
        config = tmp_path / "apexcal.toml"
        config.write_text(EXAMPLE.read_text() + second)
        result = check(str(config))
        assert result.returncode == 0, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1, lines
        assert "'jane' and 'jane-team' share the account jane@dav.example.com" in lines[0]
        assert "must not share activities" in lines[0]

    def test_two_calendars_of_one_principal_warn_with_secrets(self, tmp_path: Path) -> None:
        """Two calendars in one calendar home (user names in files, not the config) warn under --secrets too."""
        secret = tmp_path / "dav"
        secret.write_text("dav-secret\n", encoding="utf-8")
        secret.chmod(0o600)
        config = tmp_path / "apexcal.toml"
        config.write_text(
            '[source]\nbase_url = "https://api.example.com"\ntoken = "t"\norganization_id = 27\n'
            '[state]\nurl = "sqlite:////tmp/state.db"\n'
            '[[targets]]\nname = "sales"\n'
            'url = "https://caldav.fastmail.com/dav/calendars/user/jane@example.com/sales/"\n'
            f'password_file = "{secret}"\n'
            '[targets.filter]\nactivity_type = ["call", "meeting"]\n'
            '[[targets]]\nname = "tasks"\n'
            'url = "https://caldav.fastmail.com/dav/calendars/user/jane@example.com/tasks/"\n'
            f'password_file = "{secret}"\n'
            '[targets.filter]\nactivity_type = ["task", "meeting"]\n'
        )
        result = check(str(config), "--secrets")
        assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
        assert result.stderr == (
            f"{config}: warning: targets 'sales' and 'tasks' share the account "
            "caldav.fastmail.com/dav/calendars/user/jane@example.com/ and their filters can overlap; "
            "two targets of one Cyrus/Fastmail account must not share activities\n"
        )

    def test_disjoint_filters_in_one_account_do_not_warn(self, tmp_path: Path) -> None:
        """Two targets of one account whose filters pick different users cannot share an activity."""
        second = (
            '\n[[targets]]\nname = "john"\nurl = "https://dav.example.com/calendars/jane/john/"\n'
            'username = "jane"\npassword_file = "/run/credentials/apexcal.service/jane-dav"\n'
            "[targets.filter]\nassigned_to_user_id = 47\n"
        )
        config = tmp_path / "apexcal.toml"
        config.write_text(EXAMPLE.read_text() + second)
        result = check(str(config))
        assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")

    def test_a_config_directory_warns_per_organization_file(self, tmp_path: Path) -> None:
        """`config check DIR` names the organization's file in the warning line."""
        (tmp_path / "acme.toml").write_text(
            '[source]\nbase_url = "http://127.0.0.1:9"\ntoken = "t"\norganization_id = 1\n'
            '[[targets]]\nname = "sales"\nurl = "http://127.0.0.1:9/dav/calendars/user/jo/sales/"\n'
            '[[targets]]\nname = "tasks"\nurl = "http://127.0.0.1:9/dav/calendars/user/jo/tasks/"\n'
        )
        result = check(str(tmp_path))
        assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
        assert result.stderr.startswith(f"{tmp_path / 'acme.toml'}: warning: targets 'sales' and 'tasks'")
