"""``apexcal sync`` as a subprocess: summary lines, exit codes, operator errors, per-cycle log context."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.caldav_servers import CalDAVServerHandle
from tests.fixtures.emulator import EmulatorHandle
from tests.integration.test_sync_support import Harness, new_activity


@pytest.fixture
def rad(emulator: EmulatorHandle, radicale_server: CalDAVServerHandle, tmp_path: Path) -> Iterator[Harness]:
    """A harness on Radicale (the command's behaviour does not depend on the server)."""
    radicale_server.start()
    h = Harness(emulator=emulator, server=radicale_server, tmp=tmp_path)
    try:
        yield h
    finally:
        h.close()


def sync(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``apexcal sync --config FILE ARGS`` and capture its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APEXCAL_")}
    return subprocess.run(
        [sys.executable, "-m", "apexcal", "sync", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


class TestSyncCommand:
    """The command's contract."""

    def test_sync_prints_one_line_per_target_and_exits_zero(self, rad: Harness) -> None:
        """Every target gets a summary line on stdout; exit 0; the calendars hold the objects."""
        for _ in range(3):
            new_activity(rad.emulator, assigned_to_user_id=46)
        new_activity(rad.emulator, assigned_to_user_id=45)
        rad.add_target("john", filter={"assigned_to_user_id": 46})
        rad.add_target("jane", filter={"assigned_to_user_id": 45})
        done = sync(rad.config_file())
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert any(line.startswith("john: ok ") and "created=3" in line for line in lines)
        assert any(line.startswith("jane: ok ") and "created=1" in line for line in lines)
        rad.assert_converged("john")
        rad.assert_converged("jane")

    def test_target_option_syncs_only_that_target(self, rad: Harness) -> None:
        """``--target NAME`` runs exactly one cycle of that target."""
        new_activity(rad.emulator)
        rad.add_target("one")
        rad.add_target("two")
        done = sync(rad.config_file(), "--target", "two")
        assert done.returncode == 0, done.stderr
        assert [line.split(":")[0] for line in done.stdout.splitlines()] == ["two"]
        assert rad.remote("one") == {}
        assert len(rad.remote("two")) == 1

    def test_failing_target_exits_one_while_the_others_sync(self, rad: Harness) -> None:
        """A target whose calendar is missing fails (exit 1); the other target still syncs."""
        new_activity(rad.emulator)
        rad.add_target("good")
        rad.add_target("bad", url=rad.server.make_calendar_url("missing"))
        done = sync(rad.config_file())
        assert done.returncode == 1
        lines = done.stdout.splitlines()
        assert any(line.startswith("bad: failed:") and "create = true" in line for line in lines)
        assert any(line.startswith("good: ok ") for line in lines)
        assert len(rad.remote("good")) == 1

    def test_unreadable_secret_is_an_operator_error(self, rad: Harness) -> None:
        """A password file that cannot be read: one stderr line naming the key, exit 2."""
        rad.add_target("a")
        config = rad.config_file()
        (rad.tmp / "a.secret").unlink()
        done = sync(config)
        assert done.returncode == 2
        err = done.stderr.strip().splitlines()
        assert len(err) == 1
        assert "password_file" in err[0]
        assert "alice-secret-pw" not in done.stderr

    def test_unknown_target_is_an_operator_error(self, rad: Harness) -> None:
        """``--target`` naming no configured target: one stderr line, exit 2."""
        rad.add_target("a")
        done = sync(rad.config_file(), "--target", "nobody")
        assert done.returncode == 2
        assert "nobody" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1

    def test_cycle_logs_carry_target_and_cycle_context(self, rad: Harness) -> None:
        """Every line of a cycle carries target, organization and cycle id; one ``sync.cycle`` summary line."""
        new_activity(rad.emulator)
        rad.add_target("a")
        done = sync(rad.config_file(), "--log-level", "debug")
        assert done.returncode == 0, done.stderr
        events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
        summaries = [e for e in events if e["event"] == "sync.cycle"]
        assert len(summaries) == 1
        summary = summaries[0]
        assert summary["target"] == "a"
        assert summary["organization_id"] == rad.emulator.org_id
        assert summary["created"] == 1
        cycle_id = summary["cycle_id"]
        for e in events:
            if e["event"].startswith(("pull.", "sync.")):
                assert e.get("cycle_id") == cycle_id, e

    def test_sync_writes_the_feeds_after_the_targets(self, rad: Harness) -> None:
        """A configured feed is written once the targets have synced, and reported on stdout."""
        new_activity(rad.emulator, subject="Quarterly review")
        rad.add_target("a")
        feed = rad.tmp / "feeds" / "team.ics"
        rad.feeds = [{"name": "team", "path": str(feed)}]
        done = sync(rad.config_file())
        assert done.returncode == 0, done.stderr
        assert any(line.startswith("feed team:") for line in done.stdout.splitlines())
        assert b"Quarterly review" in feed.read_bytes()

    def test_feeds_without_targets_are_built_from_a_fresh_pull(self, rad: Harness) -> None:
        """With feeds and no targets, the command still pulls the CRM before writing the feeds."""
        new_activity(rad.emulator, subject="Feed-only review")
        feed = rad.tmp / "feeds" / "team.ics"
        rad.feeds = [{"name": "team", "path": str(feed)}]
        done = sync(rad.config_file())
        assert done.returncode == 0, done.stderr
        assert b"Feed-only review" in feed.read_bytes()

    def test_feeds_without_targets_and_an_unreachable_api_fail(self, rad: Harness) -> None:
        """A pull that fails leaves the feeds as they were and exits non-zero, never 0 with stale feeds."""
        feed = rad.tmp / "feeds" / "team.ics"
        rad.feeds = [{"name": "team", "path": str(feed)}]
        config = rad.config_file()
        rad.emulator.admin.fault("status", count=50, status=503)
        done = sync(config)
        assert done.returncode != 0
        assert not feed.exists()

    def test_refused_token_is_an_operator_error(self, rad: Harness) -> None:
        """A token the API refuses: one stderr line, exit 2, no cycle run, the token never shown."""
        new_activity(rad.emulator)
        rad.add_target("a")
        config = rad.config_file()
        (rad.tmp / "token.secret").write_text("not-a-valid-token-123")
        done = sync(config)
        assert done.returncode == 2
        err = done.stderr.strip().splitlines()
        assert len(err) == 1, err
        assert "401" in err[0]
        assert "not-a-valid-token-123" not in done.stderr
        assert rad.remote("a") == {}
