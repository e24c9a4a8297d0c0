"""The sync webhook of ``apexcal run``: a real daemon (interval one hour), the emulator and Radicale.

With nothing else due for an hour, only the webhook can bring a CRM change
into the calendar within seconds; webhook secrets are issued and rotated in
the store while the daemon runs, as ``apexcal hook`` does (tests/cli/test_hook_cmd.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from apexcal.clock import utcnow
from apexcal.emulator import EmulatorState, create_app, serve_in_thread
from apexcal.emulator.state import DEMO_TOKEN
from apexcal.feeds.tokens import hash_token, new_token
from apexcal.ical.mapping import href_name, uid_for
from apexcal.serve.hooks import DEBOUNCE_S, hook_path
from apexcal.state import Store
from tests.fixtures.caldav_servers import CalDAVServerHandle
from tests.integration.test_daemon_support import (
    NotifySocket,
    daemon_process,
    eventually,
    free_port,
    get_object,
    write_config,
)

USER = 46


def _issue(root: Path, port: int, *, rotate: bool = False) -> str:
    """A new webhook URL of the daemon's organization, as `apexcal hook url` (or `rotate`) makes it."""
    secret = new_token()
    with Store.open(f"sqlite:///{root / 'state.db'}") as store:
        if rotate:
            store.revoke_hook_secrets(at=utcnow())
        store.add_hook_secret(hash_token(secret), "crm", utcnow())
    return f"http://127.0.0.1:{port}" + hook_path(secret)


@pytest.mark.caldav
def test_webhook_syncs_now_debounced_and_rotated_secrets_stop(
    tmp_path: Path, radicale_server: CalDAVServerHandle
) -> None:
    """A CRM change plus a POST reaches Radicale within seconds; a burst is one sync; old secrets 404."""
    radicale_server.start()
    state = EmulatorState()
    state.seed(27, 12, seed=5)
    activity = next(
        int(a["id"]) for a in state.activities(27)
        if a["assigned_to_user_id"] == USER and a.get("start_date")
    )
    calendar = radicale_server.make_calendar("hooked")
    auth = ("alice", radicale_server.users["alice"])
    port = free_port()
    config = tmp_path / "apexcal.toml"
    with serve_in_thread(create_app(state)) as api_url, daemon_process(
        config=config, root=tmp_path, notify=NotifySocket()
    ) as daemon:
        write_config(
            config, root=tmp_path, api_url=api_url, token=DEMO_TOKEN, port=port, interval="1h",
            targets=[{"name": "alice", "url": calendar, "username": auth[0],
                      "password": auth[1], "user": USER}],
        )
        url = _issue(tmp_path, port)
        daemon.start()
        daemon.wait_event("sync.cycle", target="alice")  # the run at start; the next is in an hour

        # 1. A change in the CRM and one POST: in Radicale within seconds.
        subject = f"Pushed {time.monotonic_ns()}"
        state.patch_activity(activity, {"subject": subject})
        posted = time.monotonic()
        assert httpx.post(url, timeout=10).status_code == 202
        assert time.monotonic() - posted < 1.0  # answered at once, not after the sync
        href = calendar + href_name(uid_for(27, activity, "127.0.0.1"))
        eventually(lambda: subject.encode() in (get_object(href, auth) or b""),
                   DEBOUNCE_S + 10, "the pushed change in Radicale")
        daemon.wait_event("sync.cycle", after=1, target="alice")

        # 2. A burst of posts: one sync.
        started = len(daemon.events("sync.cycle_started", target="alice"))
        with httpx.Client(timeout=10) as client:
            for _ in range(5):
                assert client.post(url).status_code == 202
        fired = daemon.wait_event("hook.sync", after=1, timeout=DEBOUNCE_S + 10)
        assert fired["requests"] == 5
        daemon.wait_event("sync.cycle", after=started, target="alice")
        assert len(daemon.events("sync.cycle_started", target="alice")) == started + 1
        assert len(daemon.events("hook.sync")) == 2

        # 3. A wrong secret: 404; after a rotation the old URL is 404, the new one 202.
        wrong = url.replace(url.split("/")[-2], new_token())
        assert httpx.post(wrong, timeout=10).status_code == 404
        new_url = _issue(tmp_path, port, rotate=True)
        assert new_url != url
        assert httpx.post(url, timeout=10).status_code == 404
        assert httpx.post(new_url, timeout=10).status_code == 202

        secrets = {u.split("/")[-2] for u in (url, new_url, wrong)}
    output = daemon.output()
    assert '"event": "hook.sync"' in output
    for secret in secrets:
        assert secret not in output
