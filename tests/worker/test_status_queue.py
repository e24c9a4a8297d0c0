"""``apexcal status --config-dir DIR`` in worker mode: every organization with its queue state and failures."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from apexcal.clock import utcnow
from apexcal.state import Store

ORG = """\
[source]
base_url = "http://127.0.0.1:9"
token = "secret-token-xyz"
organization_id = {org}

[[targets]]
name = "jane"
url = "http://127.0.0.1:9/jane/"

[[feeds]]
name = "team"
path = "{dir}/{key}-team.ics"
"""


def _cells(output: str, section: str, name: str) -> list[str]:
    """The cells of row ``name`` in the table of organization ``section``."""
    table = output.split(f"apexcal — {section} ")[1].split("apexcal — ")[0]
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 2 and cells[2] == name:
            return cells
    raise AssertionError(f"no row {name!r} for {section} in:\n{output}")


@pytest.mark.postgres
def test_status_shows_pull_feed_and_target_failures_with_queue_state(
    scratch_db: str, tmp_path: Path
) -> None:
    """The workers' pull has a row; failures are counted for targets, feeds and the pull; queued jobs show."""
    from apexcal.worker.runner import make_app
    from apexcal.worker.tasks import PULL, PULL_LABEL, pull_lock

    (tmp_path / "apexcal.toml").write_text(f'[state]\nurl = "{scratch_db}"\n')
    for key, org in (("acme", 1), ("beta", 2)):
        (tmp_path / f"{key}.toml").write_text(ORG.format(org=org, dir=tmp_path, key=key))
    now = utcnow()
    with Store.open(scratch_db) as opened:
        acme = opened.for_organization("acme")
        acme.record_success(PULL_LABEL, now - timedelta(minutes=10), {})
        for minutes in (6, 5):
            acme.record_failure(PULL_LABEL, now - timedelta(minutes=minutes), "ApiTransportError", "down")
        for minutes in (4, 3, 2):
            acme.record_failure("jane", now - timedelta(minutes=minutes), "CalDAVError", "refused")
        acme.record_failure("feed:team", now - timedelta(minutes=1), "OSError", "disk full")
        opened.for_organization("beta").record_success("jane", now, {})
        schema = opened.queue_schema()
    app = make_app(scratch_db, schema, pool_size=1)
    with app.open():
        lock = pull_lock("acme")
        app.configure_task(PULL, lock=lock, queueing_lock=lock).defer(org="acme")
    done = subprocess.run(
        [sys.executable, "-m", "apexcal", "status", "--config-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    pull = _cells(out, "acme", PULL_LABEL)
    assert (pull[1], pull[3], pull[-2]) == ("pull", "queued", "2")
    assert "ApiTransportError: down" in pull[5]
    jane = _cells(out, "acme", "jane")
    assert (jane[3], jane[-2]) == ("-", "3")
    assert "CalDAVError: refused" in jane[5]
    team = _cells(out, "acme", "team")
    assert team[-2] == "1"
    assert "OSError: disk full" in team[5]
    assert _cells(out, "beta", "jane")[-2] == "0"
    with pytest.raises(AssertionError):
        _cells(out, "beta", PULL_LABEL)  # beta's workers never pulled
