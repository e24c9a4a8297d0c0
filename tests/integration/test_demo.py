"""``apexcal demo`` as a real subprocess: URLs printed, a change through the API arrives, Ctrl-C cleans up."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from apexcal.ical.mapping import href_name, uid_for
from tests.integration.test_daemon_support import APEXCAL, eventually

START_DEADLINE_S = 40.0
INTERVAL_S = 5.0  # apexcal.demo.DEMO_INTERVAL


@dataclass
class Demo:
    """The running demo and what it printed."""

    proc: subprocess.Popen[bytes]
    tmp: Path
    lines: list[str] = field(default_factory=list)

    def field(self, kind: str, name: str | None = None) -> list[str]:
        """The printed lines of ``kind`` (and ``name``), split into fields."""
        found = [line.split() for line in self.lines if line.startswith(kind + " ")]
        return [f for f in found if name is None or f[1] == name]


def read_until_ready(proc: subprocess.Popen[bytes]) -> list[str]:
    """Read the demo's stdout until its ``ready:`` line, within the start deadline."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffer = b""
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + START_DEADLINE_S
    try:
        while b"\nready:" not in b"\n" + buffer or not buffer.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or proc.poll() is not None:
                raise AssertionError(f"the demo did not get ready; printed {buffer!r}")
            if selector.select(timeout=remaining):
                buffer += os.read(fd, 65536)
    finally:
        selector.close()
    return buffer.decode().splitlines()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """``apexcal demo`` with its temporary directory under ``tmp_path/tmp``."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with (tmp_path / "stderr.log").open("wb") as stderr:
        proc = subprocess.Popen(
            [APEXCAL, "demo", "--activities", "40", "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": str(tmp)},
        )
    try:
        yield Demo(proc=proc, tmp=tmp, lines=read_until_ready(proc))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=15)
        assert proc.stdout is not None
        proc.stdout.close()


class TestDemo:
    def test_demo_syncs_a_change_and_stops_cleanly_on_sigint(self, demo: Demo) -> None:
        """URLs are printed; an API change reaches CalDAV and the feed in one interval; SIGINT exits 0, temp dir gone."""
        [emulator] = demo.field("emulator")
        api, token = emulator[1], emulator[2].removeprefix("token=")
        calendars = {f[1]: f for f in demo.field("caldav")}
        assert set(calendars) == {"jane", "john"}
        feeds = demo.field("feed")
        assert {f[1] for f in feeds} == {"team", "team-busy"}
        assert {f[2].split(":", 1)[0] for f in feeds} == {"http", "webcal"}
        team = next(f[2] for f in feeds if f[1] == "team" and f[2].startswith("http:"))

        # A change made through the API, to one of John's activities inside the feed's window.
        headers = {"Authorization": f"Bearer {token}"}
        listing = httpx.get(f"{api}/activities", params={"organization_id": 27, "assigned_to_user_id": 46,
                                                         "$limit": 100}, headers=headers, timeout=10)
        listing.raise_for_status()
        soon = (datetime.now(UTC) - timedelta(days=20)).date().isoformat()
        activity = next(a for a in listing.json()["data"] if (a.get("start_date") or "") >= soon)
        subject = f"Demo change {time.monotonic_ns()}"
        httpx.patch(f"{api}/activities/{activity['id']}", json={"subject": subject},
                    headers=headers, timeout=10).raise_for_status()

        _, _, url, user, password = calendars["john"]
        auth = (user.removeprefix("username="), password.removeprefix("password="))
        object_url = url + href_name(uid_for(27, activity["id"], "127.0.0.1"))
        # First cycles (the initial sync) may still be running: one interval after them.
        eventually(lambda: subject.encode() in httpx.get(object_url, auth=auth, timeout=5).content,
                   INTERVAL_S + 20, "the change in John's calendar")
        eventually(lambda: subject.encode() in httpx.get(team, timeout=5).content,
                   INTERVAL_S + 10, "the change in the team feed")

        demo.proc.send_signal(signal.SIGINT)
        assert demo.proc.wait(timeout=20) == 0
        assert list(demo.tmp.iterdir()) == []
        with pytest.raises(httpx.TransportError):
            httpx.get(url, auth=auth, timeout=2)

    def test_killed_demo_leaves_no_calendar_server_running(self, demo: Demo) -> None:
        """SIGKILL of the demo also ends its Radicale: nothing keeps serving the calendars."""
        _, _, url, user, password = demo.field("caldav", "john")[0]
        auth = (user.removeprefix("username="), password.removeprefix("password="))
        # Serving before the kill (the calendar itself may not be created yet).
        assert httpx.request("PROPFIND", url, auth=auth, headers={"Depth": "0"}, timeout=5).status_code in (207, 404)
        demo.proc.kill()
        demo.proc.wait(timeout=15)

        def gone() -> bool:
            try:
                httpx.request("PROPFIND", url, auth=auth, headers={"Depth": "0"}, timeout=2)
            except httpx.TransportError:
                return True
            return False

        eventually(gone, 15, "the demo's Radicale to stop")
