"""``apexcal run`` as a real subprocess against the emulator and Radicale: the life of one daemon.

One daemon runs for the whole module (starting one costs a second): the
tests follow it from READY through syncing, serving, a change, reloads and
SIGTERM, in file order; each waits for its own condition with a deadline.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from apexcal.emulator import EmulatorState, create_app, serve_in_thread
from apexcal.emulator.state import DEMO_TOKEN
from apexcal.ical.mapping import href_name, uid_for
from tests.fixtures.caldav_servers import CalDAVServerHandle
from tests.integration.test_daemon_support import (
    DaemonProcess,
    NotifySocket,
    calendar_hrefs,
    daemon_process,
    eventually,
    free_port,
    get_object,
    issue_feed_token,
    write_config,
)

INTERVAL_S = 2.0
WATCHDOG_S = 1.0
USER = 46


@dataclass
class Running:
    """The module's daemon and what the tests need around it."""

    daemon: DaemonProcess
    state: EmulatorState
    api_url: str
    server: str
    calendar: str
    auth: tuple[str, str]
    feed_token: str
    config: Path
    root: Path
    port: int

    def feed_url(self, name: str = "team") -> str:
        return f"{self.server}/feeds/{self.feed_token}/{name}.ics"

    def object_url(self, activity_id: int) -> str:
        return self.calendar + href_name(uid_for(27, activity_id, "127.0.0.1"))

    def write(self, **kwargs: object) -> None:
        write_config(
            self.config, root=self.root, api_url=self.api_url, token=DEMO_TOKEN,
            targets=[{"name": "alice", "url": self.calendar, "username": self.auth[0],
                      "password": self.auth[1], "user": USER}],
            port=self.port, interval=f"{int(INTERVAL_S)}s", **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, radicale_server: CalDAVServerHandle
) -> Iterator[Running]:
    """A daemon syncing one target and serving one feed, at debug level."""
    radicale_server.start()
    root = tmp_path_factory.mktemp("daemon")
    state = EmulatorState()
    state.seed(27, 40, seed=3)
    with serve_in_thread(create_app(state)) as api_url, daemon_process(
        config=root / "apexcal.toml", root=root, notify=NotifySocket()
    ) as daemon:
        daemon.env = {"WATCHDOG_USEC": str(int(WATCHDOG_S * 1_000_000))}
        port = free_port()
        run = Running(
            daemon=daemon, state=state, api_url=api_url, server=f"http://127.0.0.1:{port}",
            calendar=radicale_server.make_calendar("daemon"),
            auth=("alice", radicale_server.users["alice"]),
            feed_token=issue_feed_token(root, "team"),
            config=root / "apexcal.toml", root=root, port=port,
        )
        run.write(feeds=["team"])
        daemon.start()
        yield run


def assigned_activity(state: EmulatorState) -> int:
    """The id of a live activity of the target's user with a start date."""
    for row in state.activities(27):
        if row["assigned_to_user_id"] == USER and row.get("start_date"):
            return int(row["id"])
    raise AssertionError("the seed has no activity for the user")


class TestDaemonLife:
    def test_ready_is_sent_once_started(self, running: Running) -> None:
        """The daemon sends READY=1 on the notify socket, then a STATUS= line after a cycle."""
        ready = running.daemon.notify.wait_for("READY")
        eventually(
            lambda: any("STATUS" in m for m in running.daemon.notify.received()[ready + 1 :]),
            20, "a STATUS= message after READY",
        )

    def test_watchdog_is_pinged_at_half_its_period(self, running: Running) -> None:
        """With WATCHDOG_USEC set, WATCHDOG=1 arrives about every half period while healthy."""
        def pings() -> int:
            return sum(1 for m in running.daemon.notify.received() if m.get("WATCHDOG") == "1")

        running.daemon.notify.wait_for("WATCHDOG")
        before = pings()
        # Two more pings take one period; allow a second period for a loaded machine.
        eventually(lambda: pings() >= before + 2, WATCHDOG_S * 2, "two more watchdog pings")

    def test_first_cycle_fills_the_calendar_and_the_feed(self, running: Running) -> None:
        """The first cycle writes the user's activities into Radicale and the feed is served."""
        cycle = running.daemon.wait_event("sync.cycle", target="alice")
        assert cycle["errors"] == 0
        assert cycle["organization_id"] == 27
        assert cycle["cycle_id"]
        hrefs = calendar_hrefs(running.calendar, running.auth)
        assert len(hrefs) == cycle["created"] > 0
        response = eventually(
            lambda: (r := httpx.get(running.feed_url(), timeout=5)).status_code == 200 and r,
            20, "the team feed",
        )
        assert response.content.count(b"BEGIN:VEVENT") > len(hrefs)  # every user's, not one's

    def test_change_reaches_calendar_and_feed_within_one_interval(self, running: Running) -> None:
        """A subject changed in the CRM shows in the Radicale object and the feed within one interval."""
        running.daemon.wait_event("sync.cycle", target="alice")
        activity = assigned_activity(running.state)
        subject = f"Renamed {time.monotonic_ns()}"
        running.state.patch_activity(activity, {"subject": subject})
        changed = time.monotonic()
        # One interval until the next run, plus the run itself.
        bound = INTERVAL_S + 4.0
        eventually(lambda: subject.encode() in (get_object(running.object_url(activity), running.auth) or b""),
                   bound, "the changed object in Radicale")
        eventually(lambda: subject.encode() in httpx.get(running.feed_url(), timeout=5).content,
                   max(bound - (time.monotonic() - changed), 0.5), "the changed event in the feed")

    def test_cycle_lines_carry_target_organization_and_cycle(self, running: Running) -> None:
        """Every sync.* line names its target, organization and cycle; one sync.cycle line per cycle."""
        running.daemon.wait_event("sync.cycle", target="alice")
        lines = [line for line in running.daemon.logs() if str(line.get("event", "")).startswith("sync.")]
        assert lines
        for line in lines:
            assert (line.get("target"), line.get("organization_id")) == ("alice", 27), line
            assert line.get("cycle_id"), line
            assert line.get("job") == "target:alice", line
        summaries = [line["cycle_id"] for line in lines if line["event"] == "sync.cycle"]
        assert len(summaries) == len(set(summaries))

    def test_metrics_and_health_are_served(self, running: Running) -> None:
        """``/metrics`` has the per-target and request series; ``/healthz`` answers 200."""
        running.daemon.wait_event("sync.cycle", target="alice")
        body = httpx.get(f"{running.server}/metrics", timeout=5).text
        for series in (
            'apexcal_target_last_success_timestamp_seconds{target="alice"}',
            'apexcal_cycle_duration_seconds_count{target="alice"}',
            'apexcal_objects_total{action="created",target="alice"}',
            "apexcal_api_requests_total{",
            'apexcal_caldav_requests_total{method="PUT",status="201",target="alice"}',
            'apexcal_feed_last_build_timestamp_seconds{feed="team"}',
        ):
            assert series in body, series
        health = httpx.get(f"{running.server}/healthz", timeout=5)
        assert health.status_code == 200, health.text

    def test_reload_with_a_valid_config_rebuilds_the_jobs(self, running: Running) -> None:
        """SIGHUP with a new feed: RELOADING=1, READY=1, and the new feed is built."""
        before = len(running.daemon.notify.received())
        running.write(feeds=["team", "extra"])
        running.daemon.send(signal.SIGHUP)
        reloading = running.daemon.notify.wait_for("RELOADING", after=before)
        running.daemon.notify.wait_for("READY", after=reloading)
        running.daemon.wait_event("config.reloaded")
        running.daemon.wait_event("feed.built", feed="extra")
        assert (running.root / "feeds" / "extra.ics").exists()

    def test_reload_with_a_broken_config_keeps_the_old_one(self, running: Running) -> None:
        """SIGHUP with an invalid interval is logged with the problem; syncing goes on."""
        running.write(feeds=["team", "extra"], broken=True)
        running.daemon.send(signal.SIGHUP)
        failed = running.daemon.wait_event("config.reload_failed")
        assert any("sync.interval" in problem for problem in failed["problems"]), failed
        cycles = len(running.daemon.events("sync.cycle", target="alice"))
        running.daemon.wait_event("sync.cycle", after=cycles, target="alice")
        running.daemon.wait_event("feed.built", after=len(running.daemon.events("feed.built", feed="extra")),
                                  feed="extra")
        assert running.daemon.alive

    def test_sigterm_stops_with_exit_zero(self, running: Running) -> None:
        """SIGTERM: STOPPING=1, exit code 0 within the shutdown bound."""
        running.daemon.send(signal.SIGTERM)
        started = time.monotonic()
        assert running.daemon.wait_exit(timeout=8 + 5) == 0
        assert time.monotonic() - started < 8
        running.daemon.notify.wait_for("STOPPING", timeout=2)
        assert running.daemon.events("daemon.stopped")

    def test_no_secret_in_any_output(self, running: Running) -> None:
        """Neither the API token, the CalDAV password nor the feed token appear in any output."""
        assert not running.daemon.alive
        output = running.daemon.output()
        assert '"level": "debug"' in output  # the run really logged at debug level
        for secret in (DEMO_TOKEN, running.auth[1], running.feed_token):
            assert secret not in output
