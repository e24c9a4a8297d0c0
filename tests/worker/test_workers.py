"""Three `apexcal worker` processes on one PostgreSQL, three organizations, 21 Radicale calendars.

Everything here is a real process or server: a scratch PostgreSQL database per
run (dropped after), the emulator on loopback (its request log counts API
requests per organization), Radicale, and the workers started as
``python -m apexcal worker``.  One scenario walks through convergence, quiet
intervals, a change, a SIGKILL mid-apply, dropped database sessions and a
SIGTERM, checking after each step that every calendar and feed holds exactly
what the CRM says and that no two cycles of one target ever overlapped.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from icalendar import Calendar
from sqlalchemy import create_engine, text

from apexcal.emulator import EmulatorState, create_app, serve_in_thread
from apexcal.state.queue import current_queue_schema
from tests.fixtures.caldav_servers import CalDAVServerHandle
from tests.fixtures.emulator import EmulatorAdmin

pytestmark = [pytest.mark.postgres, pytest.mark.caldav, pytest.mark.slow]

ORGS = {"acme": 27, "beta": 28, "gamma": 29}
TARGETS_PER_ORG = 7
ACTIVITIES_PER_ORG = 6
INTERVAL_S = 10
TICK = "2s"
HEARTBEAT_S = 2
STALLED_S = 6
REAPER = "5s"
SHUTDOWN_S = 10


_QUERY = b"""<?xml version="1.0" encoding="utf-8"?>
<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:prop><C:calendar-data/></D:prop>
  <C:filter><C:comp-filter name="VCALENDAR"/></C:filter>
</C:calendar-query>"""


def _token(org: str) -> str:
    return f"worker-test-token-{org}"


@dataclass(kw_only=True)
class World:
    """The servers, the config directory and the running workers of the scenario."""

    state: EmulatorState
    admin: EmulatorAdmin
    base_url: str
    dav: CalDAVServerHandle
    config_dir: Path
    db_url: str
    calendars: dict[tuple[str, str], str]
    feeds: dict[str, Path]
    logs: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    killed: dict[int, float] = field(default_factory=dict)

    def start_worker(self, index: int, *extra: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"worker-{index}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "apexcal", "worker", "--config-dir", str(self.config_dir),
                 "--concurrency", "3", "--log-level", "debug", *extra],
                stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.workers.append(proc)
        return proc

    def expected(self, org: str) -> dict[str, str]:
        """UID → SUMMARY of every live activity of ``org``."""
        org_id = ORGS[org]
        return {
            f"apexcal-{org_id}-{a['id']}@127.0.0.1": a["subject"]
            for a in self.state.activities(org_id)
        }

    def remote(self, org: str, target: str) -> list[tuple[str, str]]:
        """(UID, SUMMARY) of every object in a target's calendar, duplicates kept (one REPORT)."""
        response = httpx.request(
            "REPORT", self.calendars[(org, target)], content=_QUERY, auth=self.dav.auth,
            headers={"Depth": "1", "Content-Type": "application/xml"}, timeout=10.0,
        )
        response.raise_for_status()
        found: list[tuple[str, str]] = []
        root = ElementTree.fromstring(response.content)  # noqa: S314  (our own loopback server)
        for node in root.iter("{urn:ietf:params:xml:ns:caldav}calendar-data"):
            data = (node.text or "").encode()
            found.append((_prop(data, b"UID"), _prop(data, b"SUMMARY")))
        return found

    def converged(self) -> list[str]:
        """What still differs from the CRM (empty once every calendar and feed is exact)."""
        problems: list[str] = []
        for (org, target), _url in sorted(self.calendars.items()):
            want = self.expected(org)
            got = self.remote(org, target)
            if sorted(got) != sorted(want.items()):
                odd = sorted(set(got) ^ set(want.items()))[:2]
                problems.append(f"{org}/{target}: {len(got)} objects, want {len(want)}; {odd}")
        for org in sorted(self.feeds):
            want = self.expected(org)
            body = self.feed_body(org)
            if body is None:
                problems.append(f"feed {org}: missing")
                continue
            uids = [line.split(b":", 1)[1].decode() for line in body.splitlines() if line.startswith(b"UID:")]
            if sorted(uids) != sorted(want):
                problems.append(f"feed {org}: {len(uids)} events, want {len(want)}")
        return problems

    def feed_body(self, org: str) -> bytes | None:
        """The body of ``org``'s feed as the workers stored it in the database (worker mode)."""
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                if conn.execute(text("SELECT to_regclass('feed_bodies')")).scalar() is None:
                    return None  # the workers have not migrated the database yet
                body = conn.execute(
                    text("SELECT body FROM feed_bodies WHERE organization = :org AND feed = 'team'"),
                    {"org": org},
                ).scalar_one_or_none()
        finally:
            engine.dispose()
        return None if body is None else bytes(body)

    def wait_converged(self, within: float) -> float:
        """Seconds until converged; fails with what differs after ``within``."""
        start = time.monotonic()
        problems: list[str] = ["not checked"]
        while time.monotonic() - start < within:
            problems = self.converged()
            if not problems:
                return time.monotonic() - start
            time.sleep(1.0)
        pytest.fail(f"not converged after {within:.0f}s: {problems[:5]}")

    def job_status(self, job_id: int) -> str:
        """The queue's status of job ``job_id`` (``doing``, ``succeeded``, ``failed``…)."""
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                schema = current_queue_schema(conn)
                return str(conn.execute(
                    text(f"SELECT status::text FROM {schema}.procrastinate_jobs WHERE id = :id"),  # noqa: S608  (our own schema name)
                    {"id": job_id},
                ).scalar_one())
        finally:
            engine.dispose()

    def events(self) -> list[dict[str, Any]]:
        """Every JSON log line of every worker."""
        lines: list[dict[str, Any]] = []
        for path in sorted(self.logs.glob("worker-*.log")):
            index = int(path.stem.split("-")[1])
            for raw in path.read_text(errors="replace").splitlines():
                if raw.startswith("{"):
                    with_worker = json.loads(raw)
                    with_worker["_worker"] = index
                    lines.append(with_worker)
        return lines


def _prop(data: bytes, name: bytes) -> str:
    calendar = Calendar.from_ical(data)
    for component in calendar.walk():
        if component.name in ("VEVENT", "VTODO"):
            return str(component.get(name.decode(), ""))
    return ""


def _stamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def assert_no_overlapping_cycles(world: World) -> int:
    """No two cycles of one target overlap, judged from the logs alone; return the cycle count."""
    starts: dict[str, tuple[float, int, tuple[str, str]]] = {}
    spans: dict[tuple[str, str], list[tuple[float, float, str]]] = {}
    ends = {"sync.cycle", "sync.cycle_failed", "sync.cycle_cancelled"}
    for event in world.events():
        cycle = event.get("cycle_id")
        if event.get("event") == "sync.cycle_started":
            starts[cycle] = (_stamp(event), event["_worker"], (event["organization"], event["target"]))
        elif event.get("event") in ends and cycle in starts:
            begin, _worker, key = starts.pop(cycle)
            spans.setdefault(key, []).append((begin, _stamp(event), cycle))
    for cycle, (begin, worker, key) in starts.items():
        # A cycle without an end died with its worker (SIGKILL): it lasted until then.
        killed_at = world.killed.get(worker)
        assert killed_at is not None, f"cycle {cycle} of {key} never ended on a live worker"
        spans.setdefault(key, []).append((begin, killed_at, cycle))
    for key, items in spans.items():
        items.sort()
        for (_b1, e1, c1), (b2, _e2, c2) in itertools.pairwise(items):
            assert b2 >= e1, f"cycles {c1} and {c2} of {key} overlap"
    return sum(len(v) for v in spans.values())


def api_requests_by_org(admin: EmulatorAdmin) -> dict[int, int]:
    counts = dict.fromkeys(ORGS.values(), 0)
    for line in admin.requests():
        for org_id in counts:
            if f"organization_id={org_id}" in line:
                counts[org_id] += 1
    return counts


@pytest.fixture
def world(scratch_db: str, radicale_server: CalDAVServerHandle, tmp_path: Path) -> Iterator[World]:
    radicale_server.start()
    state = EmulatorState()
    for key, org_id in ORGS.items():
        state.add_organization(org_id, key)
        state.add_user(id=900 + org_id, full_name=f"Sync {key}", email=None,
                       organizations=[org_id], token=_token(key))
        state.seed(org_id, ACTIVITIES_PER_ORG, seed=org_id)
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    (config_dir / "apexcal.toml").write_text(
        f'[state]\nurl = "{scratch_db}"\n\n'
        f'[sync]\ninterval = "{INTERVAL_S}s"\nreconcile_interval = "1h"\njitter = "0s"\n'
        f'shutdown_timeout = "{SHUTDOWN_S}s"\n\n'
        f'[worker]\ntick = "{TICK}"\nheartbeat = "{HEARTBEAT_S}s"\nstalled_after = "{STALLED_S}s"\n'
        f'reaper_interval = "{REAPER}"\nmax_job_duration = "2m"\n\n'
        '[log]\nformat = "json"\n'
    )
    password_file = tmp_path / "dav-password"
    password_file.write_text(radicale_server.password or "")
    calendars: dict[tuple[str, str], str] = {}
    feeds: dict[str, Path] = {}
    with serve_in_thread(create_app(state)) as base_url:
        admin = EmulatorAdmin(base_url=base_url)
        for key, org_id in ORGS.items():
            (config_dir / f"{key}.token").write_text(_token(key))
            lines = [
                f'[source]\nbase_url = "{base_url}"\ntoken_file = "{key}.token"\n'
                f"organization_id = {org_id}\n\n[mapping]\ngeocoder = \"none\"\n"
            ]
            for n in range(TARGETS_PER_ORG):
                url = radicale_server.make_calendar()
                calendars[(key, f"cal{n}")] = url
                lines.append(
                    f'[[targets]]\nname = "cal{n}"\nurl = "{url}"\n'
                    f'username = "{radicale_server.username}"\npassword_file = "{password_file}"\n'
                    'tasks_as = "events"\n'
                )
            feeds[key] = tmp_path / "feeds" / f"{key}.ics"
            lines.append(f'[[feeds]]\nname = "team"\npath = "{feeds[key]}"\nwindow = {{ past_days = 3660, future_days = 3660 }}\n')
            (config_dir / f"{key}.toml").write_text("\n".join(lines))
        w = World(
            state=state, admin=admin, base_url=base_url, dav=radicale_server,
            config_dir=config_dir, db_url=scratch_db, calendars=calendars, feeds=feeds,
            logs=tmp_path,
        )
        try:
            yield w
        finally:
            for proc in w.workers:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=30)
            admin.http.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(predicate: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


class TestThreeWorkers:
    @pytest.mark.timeout(900)
    def test_workers_converge_share_work_survive_kills_and_stop_cleanly(self, world: World) -> None:
        """Convergence, ≤ 2 API requests per organization per quiet interval, SIGKILL, dropped sessions, SIGTERM."""
        # 1. Three workers converge every calendar and feed.
        metrics_port = _free_port()
        world.start_worker(0, "--metrics-listen", f"127.0.0.1:{metrics_port}")
        for index in (1, 2):
            world.start_worker(index)
        world.wait_converged(within=120)

        # 2. A quiet stretch: at most one pull (2 requests) per organization per interval.
        time.sleep(INTERVAL_S)  # let the first round's cycles finish
        world.admin.reset_counters()
        window = 2 * INTERVAL_S
        time.sleep(window)
        counts = api_requests_by_org(world.admin)
        assert all(1 <= n <= 2 * (window // INTERVAL_S + 1) for n in counts.values()), counts
        assert world.converged() == []

        # 3. A change in one organization reaches its calendars and feed within an interval or two.
        some = world.state.activities(ORGS["beta"])[0]["id"]
        world.state.patch_activity(some, {"subject": "Moved by the CRM"})
        world.wait_converged(within=6 * INTERVAL_S)

        # 4. SIGKILL a worker in the middle of writing: the targets converge, no duplicates.
        for activity in world.state.activities(ORGS["acme"]):
            world.state.patch_activity(activity["id"], {"subject": f"Renamed {activity['id']}"})
        victim: list[tuple[int, int]] = []  # (worker, job id) of a cycle caught writing

        def writing() -> bool:
            # A cycle that has started, written at least one object and not ended yet.
            open_cycles: dict[str, list[int]] = {}
            for event in world.events():
                name, cycle = event.get("event"), event.get("cycle_id")
                if name == "sync.cycle_started":
                    open_cycles[cycle] = [event["_worker"], int(event["job_id"]), 0]
                elif name in ("sync.cycle", "sync.cycle_failed", "sync.cycle_cancelled"):
                    open_cycles.pop(cycle, None)
                elif name == "caldav.write" and cycle in open_cycles:
                    open_cycles[cycle][2] += 1
            busy = [(worker, job) for worker, job, writes in open_cycles.values() if writes]
            victim[:] = busy[:1]
            return bool(busy)

        _wait_for(writing, within=4 * INTERVAL_S, what="a worker writing")
        killed, job_id = victim[-1]
        world.workers[killed].send_signal(signal.SIGKILL)
        world.workers[killed].wait(timeout=10)
        world.killed[killed] = time.time()
        bound = STALLED_S + 5 + INTERVAL_S + 30  # heartbeat timeout + reaper period + one interval + slack
        world.wait_converged(within=bound)
        # The killed job is reaped, unless it had finished between the look at the
        # logs and the kill (a fast cycle): then it succeeded and nothing is left.
        if world.job_status(job_id) != "succeeded":
            _wait_for(
                lambda: any(
                    e.get("event") == "worker.job_reaped" and e.get("job_id") == job_id
                    for e in world.events()
                ),
                within=STALLED_S + 5 + 20, what=f"job {job_id} of the killed worker reaped",
            )
            assert world.job_status(job_id) == "failed"
        world.start_worker(3)

        # 5. Every database session of the workers dropped: they recover by themselves.
        engine = create_engine(world.db_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            dropped = conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )).scalar_one()
        engine.dispose()
        assert dropped > 0
        world.state.patch_activity(some, {"subject": "Moved again"})
        # A worker whose procrastinate loop lost its connections starts it again;
        # jobs it was running are reaped (stalled_after + reaper) and run by the next pull.
        world.wait_converged(within=STALLED_S + 5 + 6 * INTERVAL_S + 20)
        assert all(p.poll() is None for i, p in enumerate(world.workers) if i not in world.killed)

        # The first worker's /metrics counts its jobs and shows the queue.
        if 0 not in world.killed:
            scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
            assert 'apexcal_worker_jobs_total{outcome="ok",task="apexcal.sync_target"}' in scrape
            assert 'apexcal_queue_jobs{task="apexcal.sync_target"}' in scrape
            # Cycle metrics name the organization: targets called alike in two organizations stay apart.
            assert re.search(r'apexcal_cycles_total\{outcome="ok",target="(acme|beta|gamma)/cal\d+"\}', scrape)
            assert 'target="cal' not in scrape
            health = httpx.get(f"http://127.0.0.1:{metrics_port}/healthz", timeout=10)
            assert health.status_code == 200, health.text
            assert health.json()["worker"] == "running"

        # 6. SIGTERM: every worker exits 0 within the shutdown bound.
        running = [p for i, p in enumerate(world.workers) if i not in world.killed]
        started = time.monotonic()
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            assert proc.wait(timeout=SHUTDOWN_S + 5) == 0
        assert time.monotonic() - started < SHUTDOWN_S + 5

        # 7. No two cycles of one target ever overlapped, across all workers, from the logs alone.
        assert assert_no_overlapping_cycles(world) >= len(world.calendars) * 3
