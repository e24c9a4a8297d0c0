"""Crash safety: ``apexcal sync`` killed with SIGKILL at random requests, then run again, converges.

The command runs as a subprocess against the emulator and a real CalDAV
server, each behind a counting proxy in the test process.  The proxy kills
the subprocess at the k-th matching request — either before forwarding it
(the server never sees it) or after the server answered (the server applied
it, the process never learns) — so each kill point is exact, without sleeps.
After the kills, one uninterrupted run must leave the calendar and the CRM
exactly as an uninterrupted sync would: no duplicates, nothing lost, and a
further run writes nothing.

Kill points are drawn from a seeded generator (``APEXCAL_CRASH_SEED`` picks
another seed); every failure message names them.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from apexcal.ical.remote import read_remote
from apexcal.sync.sink import AHEAD
from tests.integration.test_sync_support import (
    Harness,
    completed_like,
    harness,
    new_activity,
    new_task,
)

__all__ = ["harness"]

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("APEXCAL_CRASH_SEED", "20261122"))
APEXCAL = [sys.executable, "-m", "apexcal"]
_RUN_DEADLINE_S = 120
CONCURRENCY = 4  # [sync] concurrency of the config under test (the default)

Matcher = Callable[[str, str], bool]
_HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "keep-alive", "content-encoding"}


@dataclass(kw_only=True)
class KillPlan:
    """Kill the victim at the ``at``-th request that ``match`` accepts, ``before`` or after forwarding it."""

    match: Matcher
    at: int
    before: bool
    seen: int = 0
    fired: bool = False


@dataclass(kw_only=True)
class KillingProxy:
    """A reverse proxy on loopback that forwards to ``upstream`` and can SIGKILL a process at an exact request."""

    upstream: str
    plan: KillPlan | None = None
    victim: subprocess.Popen[bytes] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def serve(self) -> Iterator[str]:
        proxy = self
        client = httpx.Client(base_url=self.upstream, timeout=30)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                kill_before = kill_after = False
                with proxy.lock:
                    plan = proxy.plan
                    if plan is not None and not plan.fired and plan.match(self.command, self.path):
                        plan.seen += 1
                        if plan.seen == plan.at:
                            plan.fired = True
                            kill_before, kill_after = plan.before, not plan.before
                if kill_before:
                    proxy.kill()
                    self.close_connection = True
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                upstream = client.request(self.command, self.path, content=body, headers=headers)
                if kill_after:
                    proxy.kill()
                    self.close_connection = True
                    return
                data = upstream.content
                self.send_response(upstream.status_code)
                for k, v in upstream.headers.items():
                    if k.lower() not in _HOP_HEADERS:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_DELETE = do_PATCH = do_POST = do_PROPFIND = do_REPORT = _handle
            do_MKCALENDAR = do_OPTIONS = do_HEAD = _handle

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self.url
        finally:
            server.shutdown()
            server.server_close()
            client.close()

    def kill(self) -> None:
        if self.victim is not None and self.victim.poll() is None:
            os.kill(self.victim.pid, signal.SIGKILL)


@dataclass(kw_only=True)
class CrashRig:
    """The harness plus proxies in front of the API and the CalDAV server, and the command to run."""

    h: Harness
    api: KillingProxy
    dav: KillingProxy
    config: Path
    kills: list[str] = field(default_factory=list)

    def run(self, plan: KillPlan | None = None, proxy: KillingProxy | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run ``apexcal sync`` once; with a plan, the proxy kills it at the planned request."""
        for p in (self.api, self.dav):
            p.plan = None
        if plan is not None and proxy is not None:
            proxy.plan = plan
        proc = subprocess.Popen(
            [*APEXCAL, "sync", "--config", str(self.config), "--log-level", "warning"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if not k.startswith("APEXCAL_")},
        )
        for p in (self.api, self.dav):
            p.victim = proc
        try:
            out, err = proc.communicate(timeout=_RUN_DEADLINE_S)
        finally:
            for p in (self.api, self.dav):
                p.victim = None
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        if plan is not None:
            where = "API" if proxy is self.api else "CalDAV"
            self.kills.append(f"{where}#{plan.at}{'<' if plan.before else '>'}")
            assert plan.fired, f"kill point {self.kills[-1]} was never reached: {out.decode()}"
            assert done.returncode == -signal.SIGKILL, (done.returncode, err.decode()[-2000:])
        return done

    def converge(self) -> None:
        """One uninterrupted run succeeds, the calendar matches, and another run writes nothing."""
        done = self.run()
        assert done.returncode == 0, f"kills {self.kills}: {done.stdout.decode()} {done.stderr.decode()[-3000:]}"
        self.h.assert_converged("a")
        again = self.h.cycle("a")
        assert (again.created, again.updated, again.deleted, again.written_back) == (0, 0, 0, 0), self.kills
        assert self.h.count("PUT") == 0


@pytest.fixture
def rig(harness: Harness) -> Iterator[CrashRig]:
    """Proxies in front of the emulator and the CalDAV server, and a config pointing at them."""
    api = KillingProxy(upstream=harness.emulator.base_url)
    dav = KillingProxy(upstream=harness.server.base_url.rstrip("/"))
    api_gen, dav_gen = api.serve(), dav.serve()
    api_url, dav_url = next(api_gen), next(dav_gen)
    url = harness.add_target("a")
    config = harness.config_file(
        base_url=api_url, urls={"a": url.replace(harness.server.base_url.rstrip("/"), dav_url)}
    )
    try:
        yield CrashRig(h=harness, api=api, dav=dav, config=config)
    finally:
        for gen in (api_gen, dav_gen):
            gen.close()


def _method(*methods: str) -> Matcher:
    return lambda method, path: method in methods


class TestCrashSafety:
    """SIGKILL at any request, then a normal run, gives the state of an uninterrupted sync."""

    def test_killed_initial_sync_converges(self, rig: CrashRig) -> None:
        """Four kills during the initial sync of 60 objects (PROPFIND, REPORT, PUTs), then a clean run."""
        rng = random.Random(f"{SEED}:initial:{rig.h.server.kind}")
        for i in range(60):
            new_activity(rig.h.emulator, subject=f"Site visit {i}", start_time=f"{8 + i % 9:02d}:00:00", end_time=f"{9 + i % 9:02d}:00:00")
        # Each run sends PROPFIND, REPORT, then a PUT per object still missing: four
        # kills of at most 14 requests each always land inside a run.
        for _ in range(4):
            rig.run(KillPlan(match=_method("PUT", "PROPFIND", "REPORT"), at=rng.randint(1, 14), before=rng.random() < 0.5), rig.dav)
        rig.converge()

    def test_killed_in_the_middle_of_a_pipelined_first_sync_converges(self, rig: CrashRig) -> None:
        """A first sync maps while it writes: killed at a PUT deep into it, what was answered is recorded with its etag.

        Every record left by the killed run names an object the server holds
        with exactly the recorded etag (taken from the PUT's answer), nothing
        answered before the writes still in flight is unrecorded, and a clean
        run then converges without duplicates.
        """
        rng = random.Random(f"{SEED}:pipelined:{rig.h.server.kind}")
        for i in range(60):
            new_activity(rig.h.emulator, subject=f"Call {i}", start_time=f"{8 + i % 9:02d}:00:00", end_time=f"{9 + i % 9:02d}:00:00")
        at = rng.randint(20, 50)
        rig.run(KillPlan(match=_method("PUT"), at=at, before=rng.random() < 0.5), rig.dav)
        records = rig.h.store.records("a")
        with rig.h.sink("a") as sink:
            listing = sink.listing()
        assert records, rig.kills
        assert all(listing.get(r.href) == r.etag for r in records.values()), rig.kills
        # At most the writes in flight or queued for the connections were answered unrecorded.
        assert len(records) >= at - 1 - 2 * AHEAD * CONCURRENCY, (len(records), rig.kills)
        rig.converge()

    def test_killed_update_batch_converges(self, rig: CrashRig) -> None:
        """Three kills while 20 changed activities are written, then a clean run."""
        rng = random.Random(f"{SEED}:update:{rig.h.server.kind}")
        ids = [new_activity(rig.h.emulator, subject=f"Review {i}") for i in range(30)]
        assert rig.h.cycle("a").created == 30
        for i in rng.sample(ids, 20):
            rig.h.emulator.state.patch_activity(i, {"subject": f"Review {i} (moved)"})
        for _ in range(3):
            rig.run(KillPlan(match=_method("PUT"), at=rng.randint(1, 8), before=rng.random() < 0.5), rig.dav)
        rig.converge()

    def test_killed_writeback_converges(self, rig: CrashRig) -> None:
        """Three kills around the bulk PATCH and the re-read after it; every completion reaches the CRM once."""
        rng = random.Random(f"{SEED}:writeback:{rig.h.server.kind}")
        tasks = [new_task(rig.h.emulator, subject=f"Task {i}") for i in range(6)]
        assert rig.h.cycle("a").created == 6
        for task in tasks[:4]:
            obj = rig.h.object_of("a", task)
            assert rig.h.put_raw("a", obj.href, completed_like(obj.data, "tasks.org"), obj.etag).status_code in (200, 204)
        plans = [
            KillPlan(match=lambda m, p: m == "PATCH", at=1, before=True),
            KillPlan(match=lambda m, p: m == "PATCH", at=1, before=False),
            # The second GET /activities of a cycle is the re-read after the writeback.
            KillPlan(match=lambda m, p: m == "GET" and p.startswith("/activities?"), at=2, before=rng.random() < 0.5),
        ]
        for plan in plans:
            rig.run(plan, rig.api)
        rig.converge()
        for task in tasks:
            assert rig.h.emulator.state.get(task)["done"] is (task in tasks[:4]), rig.kills
            assert read_remote("", rig.h.object_of("a", task).data).done is (task in tasks[:4])

    def test_delivered_writeback_is_not_sent_again_over_a_later_crm_change(self, rig: CrashRig) -> None:
        """Killed right after the API accepted the bulk PATCH; the CRM user then undoes it: that change wins."""
        task = new_task(rig.h.emulator, subject="Call the supplier")
        assert rig.h.cycle("a").created == 1
        obj = rig.h.object_of("a", task)
        assert rig.h.put_raw("a", obj.href, completed_like(obj.data, "tasks.org"), obj.etag).status_code in (200, 201, 204)
        # The API accepts the PATCH; the process dies at the re-read after it (the
        # second GET /activities of the cycle), before the records are updated.
        rig.run(KillPlan(match=lambda m, p: m == "GET" and p.startswith("/activities?"), at=2, before=True), rig.api)
        assert rig.h.emulator.state.get(task)["done"] is True
        rig.h.emulator.state.patch_activity(task, {"done": False})
        done = rig.run()
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        assert rig.h.emulator.state.get(task)["done"] is False
        assert read_remote("", rig.h.object_of("a", task).data).done is False
        rig.converge()
        assert rig.h.emulator.state.get(task)["done"] is False

    # The calendar server plays no part in what is tested here: one is enough.
    @pytest.mark.parametrize("caldav_server", ["radicale"], indirect=True)
    def test_killed_waiting_for_the_writeback_answer_keeps_a_later_crm_change(self, rig: CrashRig) -> None:
        """Killed after the API applied the bulk PATCH, before its answer arrived; the CRM user then undoes it: that change wins."""
        task = new_task(rig.h.emulator, subject="Call the supplier")
        assert rig.h.cycle("a").created == 1
        obj = rig.h.object_of("a", task)
        assert rig.h.put_raw("a", obj.href, completed_like(obj.data, "tasks.org"), obj.etag).status_code in (200, 201, 204)
        rig.run(KillPlan(match=lambda m, p: m == "PATCH", at=1, before=False), rig.api)
        assert rig.h.emulator.state.get(task)["done"] is True
        rig.h.emulator.state.patch_activity(task, {"done": False})
        done = rig.run()
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        assert rig.h.emulator.state.get(task)["done"] is False
        assert read_remote("", rig.h.object_of("a", task).data).done is False
        rig.converge()
        assert rig.h.emulator.state.get(task)["done"] is False

    # The calendar server plays no part in what is tested here: one is enough.
    @pytest.mark.parametrize("caldav_server", ["radicale"], indirect=True)
    def test_killed_while_ticked_todos_leave_the_target_loses_no_tick(self, rig: CrashRig) -> None:
        """Ticked to-dos reassigned away: kills around the bulk PATCH and the deletes; every tick reaches the CRM, every copy goes."""
        rng = random.Random(f"{SEED}:leaving")
        rig.h.targets["a"]["filter"] = {"assigned_to_user_id": 46}
        with rig.config.open("a") as config:  # the target's table is the file's last
            config.write("[targets.filter]\nassigned_to_user_id = 46\n")
        tasks = [new_task(rig.h.emulator, subject=f"Task {i}", assigned_to_user_id=46) for i in range(6)]
        assert rig.h.cycle("a").created == 6
        ticked, leaving = tasks[:2], tasks[1:4]
        for task in ticked:
            obj = rig.h.object_of("a", task)
            assert rig.h.put_raw("a", obj.href, completed_like(obj.data, "tasks.org"), obj.etag).status_code in (200, 204)
        for task in leaving:
            rig.h.emulator.state.patch_activity(task, {"assigned_to_user_id": 47})
        rig.run(KillPlan(match=lambda m, p: m == "PATCH", at=1, before=rng.random() < 0.5), rig.api)
        rig.run(KillPlan(match=_method("DELETE"), at=rng.randint(1, 2), before=rng.random() < 0.5), rig.dav)
        rig.converge()
        for task in tasks:
            assert rig.h.emulator.state.get(task)["done"] is (task in ticked), rig.kills
