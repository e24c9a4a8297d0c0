"""``apexcal status --config FILE`` as a subprocess over a state store filled through its API."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from apexcal.clock import utcnow
from apexcal.state import ObjectRecord, Store

APEXCAL = str(Path(sys.executable).parent / "apexcal")

CONFIG = """\
[source]
base_url = "http://127.0.0.1:9"
organization_id = 27

[state]
url = "sqlite:///{db}"

[sync]
interval = "5m"

[[targets]]
name = "jane"
url = "http://127.0.0.1:9/jane/crm/"

[[targets]]
name = "joe"
url = "http://127.0.0.1:9/joe/crm/"
interval = "1h"

[[targets]]
name = "new"
url = "http://127.0.0.1:9/new/crm/"

[[feeds]]
name = "team"
path = "{dir}/team.ics"
per_user = true
"""


def run_status(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [APEXCAL, "status", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )


def row(output: str, name: str) -> str:
    """The table line of ``name`` (the second cell)."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 2 and cells[2] == name:
            return line
    raise AssertionError(f"no row for {name!r} in:\n{output}")


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The status output over a store holding: jane synced with records and pending writebacks, joe failing with an edit to send."""
    tmp_path = tmp_path_factory.mktemp("status")
    db = tmp_path / "state.db"
    path = tmp_path / "apexcal.toml"
    path.write_text(CONFIG.format(db=db, dir=tmp_path))
    now = utcnow()
    with Store.open(f"sqlite:///{db}") as store:
        for i in range(3):
            store.put_record(ObjectRecord(
                target="jane", uid=f"apexcal-27-{i}@h", activity_id=i, href=f"/jane/crm/{i}.ics",
                etag='"e"', pushed_hash="h", pushed_done=False, done_seen=None, kind="VEVENT",
                updated_at=now,
            ))
        store.record_success("jane", now - timedelta(minutes=1), {"created": 3})
        store.journal_writebacks("jane", [(1, True), (2, True)], now)
        store.record_success("joe", now - timedelta(hours=3), {})
        store.journal_field_writebacks("joe", [("u", 7, {"subject": "New"}, {"subject": "s1"})], now)
        store.record_failure("joe", now - timedelta(hours=2), "ApiTransportError", "cannot reach the API\nat all")
        store.set_feed_built("team", '"x"', now - timedelta(minutes=2), 1234)
        store.set_feed_built("team-46", '"y"', now - timedelta(minutes=2), 99)
        store.record_feed_failure("team", now - timedelta(minutes=1), "OSError", "disk full")
    done = run_status(path)
    assert done.returncode == 0, done.stderr
    return done.stdout


class TestStatus:
    def test_table_shows_every_target_and_feed(self, output: str) -> None:
        """Each target and feed (per-user files included) has a row with its figures."""
        out = output
        jane = row(out, "jane")
        assert "│ 3 " in jane  # objects
        assert "│ 2 " in jane  # pending writebacks
        assert "ApiTransportError" not in jane
        assert "- " in jane.split("│")[4]  # no current error
        assert row(out, "team").count("1234 bytes") == 1
        assert "99 bytes" in row(out, "team-46")

    def test_failing_target_shows_its_error_and_is_due(self, output: str) -> None:
        """A target whose last error is newer than its last success shows it; its next run is due."""
        out = output
        joe = row(out, "joe")
        assert "ApiTransportError: cannot reach the API at all" in joe
        cells = [c.strip() for c in joe.split("│")]
        assert cells[7] == "due"
        assert cells[8] == "1"  # one failure since the last success
        assert cells[6] == "1"  # a calendar edit waiting to go to the CRM counts as a pending writeback

    def test_failing_feed_shows_its_error(self, output: str) -> None:
        """A feed whose job failed after its last build shows the error, on its per-user rows too."""
        assert "OSError: disk full" in row(output, "team")
        assert "OSError: disk full" in row(output, "team-46")

    def test_next_run_is_last_run_plus_interval(self, output: str) -> None:
        """jane ran a minute ago every 5 minutes: next run in about 4 minutes, as a local time."""
        out = output
        expected = (utcnow() + timedelta(minutes=4)).astimezone()
        cells = [c.strip() for c in row(out, "jane").split("│")]
        shown = datetime.strptime(cells[7][:19], "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=expected.tzinfo
        )
        assert abs((shown - expected).total_seconds()) < 60
        assert cells[7] != "due"

    def test_never_run_target_runs_at_start(self, output: str) -> None:
        """A target that never ran shows never / at start."""
        cells = [c.strip() for c in row(output, "new").split("│")]
        assert cells[3] == "never"
        assert cells[7] == "at start"

    def test_bad_config_is_one_line_and_exit_2(self, tmp_path: Path) -> None:
        """A config that does not validate: one line on stderr, exit code 2, no table."""
        path = tmp_path / "bad.toml"
        path.write_text("[source]\norganization_id = 0\n")
        done = run_status(path)
        assert done.returncode == 2
        assert done.stdout == ""
        assert "organization_id" in done.stderr
        assert "Traceback" not in done.stderr




def test_config_dir_lists_every_organization(tmp_path: Path) -> None:
    """With --config-dir on SQLite: one table per organization, each from its own state, no queue column."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "apexcal.toml").write_text(f'[state]\nurl = "sqlite:///{tmp_path}/state.db"\n')
    for key, org in (("acme", 27), ("beta", 28)):
        (conf / f"{key}.toml").write_text(
            f'[source]\nbase_url = "http://127.0.0.1:9"\norganization_id = {org}\n\n'
            f'[[targets]]\nname = "jane"\nurl = "http://127.0.0.1:9/{key}/"\n'
        )
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        store.for_organization("beta").record_failure("jane", utcnow(), "CalDAVError", "refused")
    done = subprocess.run([APEXCAL, "status", "--config-dir", str(conf)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    acme, beta = done.stdout.split("apexcal — beta (organization 28)")
    assert "apexcal — acme (organization 27)" in acme
    assert "queue" not in done.stdout
    acme_jane = [c.strip() for c in row(acme, "jane").split("│")]
    beta_jane = [c.strip() for c in row(beta, "jane").split("│")]
    assert (acme_jane[3], acme_jane[-2]) == ("never", "0")
    assert "CalDAVError: refused" in beta_jane[4]
    assert beta_jane[-2] == "1"
