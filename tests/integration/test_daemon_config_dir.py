"""``apexcal run --config-dir DIR --org KEY``: the daemon for one organization of a config directory."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.fixtures.emulator import EmulatorHandle
from tests.integration.test_daemon_support import APEXCAL, free_port


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([APEXCAL, *args], capture_output=True, text=True, timeout=60, check=False)


def _feed_path(conf: Path, org: str) -> str:
    done = _run("feed", "url", "team", "--config-dir", str(conf), "--org", org)
    assert done.returncode == 0, done.stderr
    return urlsplit(done.stdout.splitlines()[0]).path


class TestRunConfigDir:
    def test_one_organization_of_a_directory_runs_with_its_own_state(
        self, emulator: EmulatorHandle, tmp_path: Path
    ) -> None:
        """The daemon syncs and serves the named organization's feed; another organization's URL opens nothing there."""
        emulator.state.seed(emulator.org_id, 5, seed=3)
        port = free_port()
        conf = tmp_path / "conf"
        conf.mkdir()
        (conf / "apexcal.toml").write_text(
            f'[state]\nurl = "sqlite:///{tmp_path}/state.db"\n\n[server]\nlisten = "127.0.0.1:{port}"\n\n'
            '[sync]\ninterval = "1h"\njitter = "0s"\n'
        )
        for key, org_id in (("acme", 28), ("beta", emulator.org_id)):
            (conf / f"{key}.toml").write_text(
                f'[source]\nbase_url = "{emulator.base_url}"\ntoken = "{emulator.token}"\n'
                f'organization_id = {org_id}\n\n[mapping]\ngeocoder = "none"\n\n'
                f'[[feeds]]\nname = "team"\npath = "{tmp_path}/{key}/team.ics"\n'
                "window = { past_days = 3660, future_days = 3660 }\n"
            )
        beta, acme = _feed_path(conf, "beta"), _feed_path(conf, "acme")
        log = tmp_path / "daemon.log"
        with log.open("wb") as out:
            daemon = subprocess.Popen(
                [APEXCAL, "run", "--config-dir", str(conf), "--org", "beta"],
                stdout=subprocess.DEVNULL, stderr=out,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            status = None
            while time.monotonic() < deadline and status != 200:
                assert daemon.poll() is None, log.read_text()
                try:
                    status = httpx.get(base + beta, timeout=5).status_code
                except httpx.TransportError:
                    status = None
                if status != 200:
                    time.sleep(0.2)
            assert status == 200, "the organization's feed was not served in time"
            body = httpx.get(base + beta, timeout=5).content
            assert body.count(b"BEGIN:VEVENT") == 5
            assert body == (tmp_path / "beta" / "team.ics").read_bytes()
            assert httpx.get(base + acme, timeout=5).status_code == 404
            assert not (tmp_path / "acme").exists()
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                assert daemon.wait(timeout=30) == 0
            finally:
                if daemon.poll() is None:
                    daemon.kill()
                    daemon.wait()
