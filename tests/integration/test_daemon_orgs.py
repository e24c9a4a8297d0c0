"""``apexcal run --config-dir DIR``: every organization of a directory in one process.

One real ``apexcal run`` subprocess, the emulator with three organizations and
the session's Radicale: each organization's calendars converge on its own
activities, one server serves each organization's ``team`` feed to its own
token (the feeds share a name), each organization's sync webhook syncs that
organization, metrics are labelled ``<org>/<name>``; SIGHUP adds an
organization, and removes one while a broken new file is reported by name and
left out.  Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from apexcal.clock import utcnow
from apexcal.feeds.tokens import hash_token, new_token
from apexcal.state import Store
from tests.fixtures.caldav_servers import CalDAVServerHandle
from tests.fixtures.emulator import EmulatorHandle
from tests.integration.test_daemon_support import APEXCAL, eventually, free_port

# Organization key → (API organization id, activities, targets).
ORGS = {"acme": (71, 4, 2), "beta": (72, 6, 1), "gamma": (73, 3, 1)}

_QUERY = b"""<?xml version="1.0" encoding="utf-8"?>
<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:prop><C:calendar-data/></D:prop>
  <C:filter><C:comp-filter name="VCALENDAR"/></C:filter>
</C:calendar-query>"""
_UID = re.compile(r"^UID:(.+?)\r?$", re.MULTILINE)


def _token(key: str) -> str:
    return f"multi-org-token-{key}"


@dataclass(kw_only=True)
class Scene:
    emulator: EmulatorHandle
    dav: CalDAVServerHandle
    conf: Path
    state_url: str
    base: str
    log: Path
    calendars: dict[tuple[str, str], str]
    feed_tokens: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def add_org(self, key: str) -> None:
        """Write ``key``'s file (its calendars made in Radicale) and issue its feed token."""
        org_id, _count, targets = ORGS[key]
        lines = [
            f'[source]\nbase_url = "{self.emulator.base_url}"\ntoken_file = "{key}.token"\n'
            f'organization_id = {org_id}\n\n[mapping]\ngeocoder = "none"\n'
        ]
        (self.conf / f"{key}.token").write_text(_token(key))
        password = self.conf.parent / "dav-password"
        for n in range(targets):
            url = self.dav.make_calendar()
            self.calendars[(key, f"cal{n}")] = url
            lines.append(
                f'[[targets]]\nname = "cal{n}"\nurl = "{url}"\nusername = "{self.dav.username}"\n'
                f'password_file = "{password}"\ntasks_as = "events"\n'
            )
        lines.append(
            f'[[feeds]]\nname = "team"\npath = "{self.conf.parent / key / "team.ics"}"\n'
            "window = { past_days = 3660, future_days = 3660 }\n"
        )
        token = new_token()
        with Store.open(self.state_url) as store:
            store.for_organization(key).add_feed_token("team", hash_token(token), "t", utcnow())
        self.feed_tokens[key] = token
        (self.conf / f"{key}.toml").write_text("\n".join(lines))

    def expected(self, key: str) -> list[str]:
        org_id = ORGS[key][0]
        return sorted(f"apexcal-{org_id}-{a['id']}@127.0.0.1" for a in self.emulator.state.activities(org_id))

    def report(self, url: str) -> str:
        """Every object of a calendar, as one REPORT answer."""
        response = httpx.request(
            "REPORT", url, content=_QUERY, auth=self.dav.auth,
            headers={"Depth": "1", "Content-Type": "application/xml"}, timeout=10,
        )
        response.raise_for_status()
        return response.text

    def remote(self, url: str) -> list[str]:
        return sorted(_UID.findall(self.report(url)))

    def feed(self, key: str) -> httpx.Response:
        return httpx.get(f"{self.base}/feeds/{self.feed_tokens[key]}/team.ics", timeout=10)

    def converged(self, key: str) -> bool:
        """Every calendar of ``key`` and its served feed hold exactly its activities."""
        assert self.proc is not None
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        want = self.expected(key)
        for (org, _target), url in self.calendars.items():
            if org == key and self.remote(url) != want:
                return False
        try:
            response = self.feed(key)
        except httpx.TransportError:
            return False
        return response.status_code == 200 and sorted(_UID.findall(response.text)) == want

    def events(self, event: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == event:
                found.append(record)
        return found


@pytest.fixture
def scene(
    emulator: EmulatorHandle, radicale_server: CalDAVServerHandle, tmp_path: Path
) -> Iterator[Scene]:
    radicale_server.start()
    for key, (org_id, count, _targets) in ORGS.items():
        emulator.state.add_organization(org_id, key)
        emulator.state.add_user(id=800 + org_id, full_name=f"Sync {key}", email=None,
                                organizations=[org_id], token=_token(key))
        emulator.state.seed(org_id, count, seed=org_id)
    (tmp_path / "dav-password").write_text(radicale_server.password or "")
    conf = tmp_path / "conf"
    conf.mkdir()
    port = free_port()
    state_url = f"sqlite:///{tmp_path}/state.db"
    (conf / "apexcal.toml").write_text(
        f'[state]\nurl = "{state_url}"\n\n[server]\nlisten = "127.0.0.1:{port}"\n\n'
        '[sync]\ninterval = "1h"\njitter = "0s"\n\n[log]\nformat = "json"\n'
    )
    scene = Scene(
        emulator=emulator, dav=radicale_server, conf=conf, state_url=state_url,
        base=f"http://127.0.0.1:{port}", log=tmp_path / "daemon.log", calendars={}, feed_tokens={},
    )
    try:
        yield scene
    finally:
        if scene.proc is not None and scene.proc.poll() is None:
            scene.proc.kill()
            scene.proc.wait(timeout=30)


class TestEveryOrganizationOfADirectory:
    def test_one_process_syncs_serves_and_reloads_every_organization(self, scene: Scene) -> None:
        scene.add_org("acme")
        scene.add_org("beta")
        hooks = {}
        with Store.open(scene.state_url) as store:
            for key in ("acme", "beta"):
                hooks[key] = new_token()
                store.for_organization(key).add_hook_secret(hash_token(hooks[key]), "t", utcnow())
        with scene.log.open("wb") as out:
            scene.proc = subprocess.Popen(
                [APEXCAL, "run", "--config-dir", str(scene.conf)],
                stdout=subprocess.DEVNULL, stderr=out, stdin=subprocess.DEVNULL,
            )
        for key in ("acme", "beta"):
            eventually(lambda k=key: scene.converged(k), 30, f"{key} converged and served")
        # The feeds share a name: each token opens its own organization's.
        assert scene.feed("acme").text.count("BEGIN:VEVENT") == 4
        assert scene.feed("beta").text.count("BEGIN:VEVENT") == 6
        metrics = httpx.get(f"{scene.base}/metrics", timeout=10).text
        for label in ("acme/cal0", "acme/cal1", "beta/cal0"):
            assert f'apexcal_target_last_success_timestamp_seconds{{target="{label}"}}' in metrics
        health = httpx.get(f"{scene.base}/healthz", timeout=10).json()
        assert sorted(health["targets"]) == ["acme/cal0", "acme/cal1", "beta/cal0"]
        assert sorted(health["feeds"]) == ["acme/team", "beta/team"]

        # beta's webhook syncs beta, at once (the interval is an hour): a change reaches its calendar and feed.
        activity = scene.emulator.state.activities(ORGS["beta"][0])[0]
        scene.emulator.state.patch_activity(int(activity["id"]), {"subject": "Pushed to beta"})
        acme_cycles = len([e for e in scene.events("sync.cycle") if e.get("organization") == "acme"])
        answer = httpx.post(f"{scene.base}/hooks/{hooks['beta']}/sync", timeout=10)
        assert answer.status_code == 202
        eventually(
            lambda: "Pushed to beta" in scene.feed("beta").text
            and "Pushed to beta" in scene.report(scene.calendars[("beta", "cal0")]),
            20, "beta's change synced by its webhook",
        )
        assert len([e for e in scene.events("sync.cycle") if e.get("organization") == "acme"]) == acme_cycles
        assert httpx.post(f"{scene.base}/hooks/{new_token()}/sync", timeout=10).status_code == 404

        # SIGHUP with a new organization: its jobs run at once.
        scene.add_org("gamma")
        scene.proc.send_signal(signal.SIGHUP)
        eventually(lambda: scene.converged("gamma"), 30, "gamma converged and served after SIGHUP")
        reloaded = eventually(lambda: scene.events("config.reloaded"), 10, "config.reloaded")
        assert reloaded[-1]["added"] == ["gamma"]

        # SIGHUP with gamma's file gone, beta's broken and a broken new file: gamma stops, beta keeps
        # its config, the new one is left out, and the error names both files.
        (scene.conf / "gamma.toml").unlink()
        beta = scene.conf / "beta.toml"
        beta.write_text(beta.read_text().replace('name = "team"', 'name = "team"\nbogus = 1'))
        delta = scene.conf / "delta.toml"
        delta.write_text("[source\n")
        scene.proc.send_signal(signal.SIGHUP)
        failed = eventually(lambda: scene.events("config.reload_failed"), 10, "config.reload_failed")
        assert failed[-1]["files"] == sorted([str(beta), str(delta)])
        assert (failed[-1]["kept"], failed[-1]["skipped"]) == (["beta"], ["delta"])
        removed = eventually(
            lambda: [e for e in scene.events("config.reloaded") if e.get("removed") == ["gamma"]],
            10, "gamma removed",
        )
        assert removed[-1]["feeds"] == ["acme/team", "beta/team"]
        assert scene.feed("gamma").status_code == 404
        assert scene.converged("acme")
        assert scene.converged("beta")

        scene.proc.send_signal(signal.SIGTERM)
        assert scene.proc.wait(timeout=30) == 0


def test_a_token_the_api_refuses_names_its_organization(emulator: EmulatorHandle, tmp_path: Path) -> None:
    """At start every organization's token must be accepted: one line naming the refused one, exit 2."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "apexcal.toml").write_text(f'[state]\nurl = "sqlite:///{tmp_path}/state.db"\n')
    for key, token in (("good", emulator.token), ("wrong", "not-a-token")):
        (conf / f"{key}.toml").write_text(
            f'[source]\nbase_url = "{emulator.base_url}"\ntoken = "{token}"\n'
            f"organization_id = {emulator.org_id if key == 'good' else 28}\n\n"
            f'[mapping]\ngeocoder = "none"\n\n[[feeds]]\nname = "team"\npath = "{tmp_path}/{key}.ics"\n'
        )
    done = subprocess.run([APEXCAL, "run", "--config-dir", str(conf)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "401" in lines[0]
    assert f"organization wrong, {conf / 'wrong.toml'}" in lines[0]
