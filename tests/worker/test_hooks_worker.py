"""The sync webhook in worker mode: a POST to `apexcal serve` defers a pull that `apexcal worker` runs.

PostgreSQL, the emulator, Radicale, the worker and the server processes are
all real.  The interval is an hour, so only the webhook can bring a CRM
change into the calendar within seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from apexcal.clock import utcnow
from apexcal.emulator import EmulatorState, create_app, serve_in_thread
from apexcal.feeds.tokens import hash_token, new_token
from apexcal.ical.mapping import href_name, uid_for
from apexcal.serve.hooks import DEBOUNCE_S, hook_path
from apexcal.state import Store
from tests.fixtures.caldav_servers import CalDAVServerHandle
from tests.integration.test_daemon_support import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.caldav, pytest.mark.slow]

ORG_ID = 31
TOKEN = "hook-worker-token"


def _eventually(check: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out after {within:.0f} s waiting for {what}"
        time.sleep(0.2)


def _answers(base: str) -> bool:
    try:
        httpx.get(base + "/healthz", timeout=2)
    except httpx.TransportError:
        return False
    return True


def test_webhook_defers_a_pull_that_brings_a_crm_change_within_seconds(
    scratch_db: str, radicale_server: CalDAVServerHandle, tmp_path: Path
) -> None:
    """A CRM change and a POST to the organization's hook reach Radicale within seconds; a wrong secret is 404."""
    radicale_server.start()
    state = EmulatorState()
    state.add_organization(ORG_ID, "hooked")
    state.add_user(id=990, full_name="Sync hooked", email=None, organizations=[ORG_ID], token=TOKEN)
    state.seed(ORG_ID, 4, seed=ORG_ID)
    calendar = radicale_server.make_calendar("hooked")
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "apexcal.toml").write_text(
        f'[state]\nurl = "{scratch_db}"\n\n[sync]\ninterval = "1h"\njitter = "0s"\n'
        'shutdown_timeout = "5s"\n\n[worker]\ntick = "2s"\n\n[log]\nformat = "json"\n'
    )
    (conf / "hooked.token").write_text(TOKEN)
    (tmp_path / "dav").write_text(radicale_server.password or "")
    with serve_in_thread(create_app(state)) as api_url, Store.open(scratch_db) as store:
        (conf / "hooked.toml").write_text(
            f'[source]\nbase_url = "{api_url}"\ntoken_file = "hooked.token"\n'
            f'organization_id = {ORG_ID}\n\n[mapping]\ngeocoder = "none"\n\n'
            f'[[targets]]\nname = "cal"\nurl = "{calendar}"\nusername = "{radicale_server.username}"\n'
            f'password_file = "{tmp_path / "dav"}"\ntasks_as = "events"\n'
        )
        secret = new_token()
        store.for_organization("hooked").add_hook_secret(hash_token(secret), None, utcnow())
        port = free_port()
        server = f"http://127.0.0.1:{port}"
        log = (tmp_path / "processes.log").open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "apexcal", *argv, "--config-dir", str(conf)],
                stdout=log, stderr=log, env=env,
            )
            for argv in (["worker", "--concurrency", "2"], ["serve", "--listen", f"127.0.0.1:{port}"])
        ]
        try:
            _eventually(lambda: _answers(server), 60, "apexcal serve listening")
            activity = next(
                int(a["id"]) for a in state.activities(ORG_ID) if a.get("start_date")
            )
            href = calendar + href_name(uid_for(ORG_ID, activity, "127.0.0.1"))
            auth = radicale_server.auth

            def holds(text: str) -> bool:
                answer = httpx.get(href, auth=auth, timeout=10)
                return answer.status_code == 200 and text.encode() in answer.content

            _eventually(lambda: holds("SUMMARY"), 60, "the first sync by the tick")

            subject = f"Pushed {time.monotonic_ns()}"
            state.patch_activity(activity, {"subject": subject})
            assert httpx.post(server + hook_path(new_token()), timeout=10).status_code == 404
            assert httpx.post(server + hook_path(secret), timeout=10).status_code == 202
            _eventually(lambda: holds(subject), DEBOUNCE_S + 20, "the pushed change in Radicale")
        finally:
            for proc in processes:
                proc.terminate()
            for proc in processes:
                proc.wait(timeout=30)
            log.close()
        output = (tmp_path / "processes.log").read_text()
        assert '"event": "worker.pulled"' in output
        assert secret not in output
