"""Benchmark: workers on one PostgreSQL and one Radicale, each figure beside a same-run baseline.

Everything runs on loopback: a scratch PostgreSQL database (dropped at the
end), the emulator in this process, Radicale as a subprocess with
``--orgs × --calendars`` calendars (≥ 20), and ``apexcal worker``
subprocesses.  Four parts:

1. **No-change target cycles per second** with 1, 2 and 4 workers
   (``--concurrency`` jobs each): ``--rounds`` no-change ``sync_target`` jobs
   per calendar are deferred at once (a lock per target, as the pull defers
   them) and timed until the queue is empty.  Beside it, a **raw loop**
   replays the very HTTP requests a no-change cycle makes (recorded from one
   cycle per target in this process) for the same number of cycles with as
   many threads as the largest run has job slots.  For each: the CPU time of
   Radicale and of the workers over the run, as a share of one core (the
   machine has 2), so the limit is visible.
2. **Queue overhead**: defers per second (one transaction each, and in
   batches of 1,000) until 10,000 jobs wait, then the latency of
   procrastinate's fetch with those 10,000 queued, beside the same fetch with
   the queue nearly empty and a bare ``SELECT 1`` on the same pool.
3. **API requests per organization per interval** on a quiet stretch of two
   intervals (10 s), two workers running with their tick.
4. **Recovery after SIGKILL**: every activity of one organization renamed,
   the worker running one of its cycles killed; seconds until every calendar
   of the organization holds the new names (heartbeat 2 s, stalled after
   6 s, reaper every 5 s, interval 10 s, as in the workers' test).

Run (a few minutes; PostgreSQL from ``APEXCAL_TEST_POSTGRES_URL``)::

    .venv/bin/python bench/scale.py [--orgs 4] [--calendars 6] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import platform
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, make_url, text  # noqa: E402
from tests.fixtures.caldav_servers import CalDAVServerHandle, radicale_handle  # noqa: E402
from tests.fixtures.emulator import EmulatorAdmin  # noqa: E402

from apexcal import log  # noqa: E402
from apexcal.emulator import EmulatorState, create_app, serve_in_thread  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TICKS = os.sysconf("SC_CLK_TCK")
FIRST_ORG_ID = 101
_QUERY = b"""<?xml version="1.0" encoding="utf-8"?>
<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:prop><C:calendar-data/></D:prop>
  <C:filter><C:comp-filter name="VCALENDAR"/></C:filter>
</C:calendar-query>"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), "?",
    )
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


@contextmanager
def scratch_database(base: str) -> Iterator[str]:
    name = f"apexcal_scale_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class World:
    """The servers, the config directory and the worker processes of the bench."""

    def __init__(self, args: argparse.Namespace, db_url: str, dav: CalDAVServerHandle,
                 api: str, state: EmulatorState, root: Path) -> None:
        self.args = args
        self.db_url = db_url
        self.dav = dav
        self.api = api
        self.state = state
        self.admin = EmulatorAdmin(base_url=api)
        self.root = root
        self.config_dir = root / "conf"
        self.config_dir.mkdir()
        self.orgs = {f"org{n}": FIRST_ORG_ID + n for n in range(args.orgs)}
        self.calendars: dict[tuple[str, str], str] = {}
        self.workers: list[subprocess.Popen[bytes]] = []
        self.engine = create_engine(
            db_url, isolation_level="AUTOCOMMIT", pool_size=2,
            connect_args={"options": "-c search_path=procrastinate"},
        )
        password = root / "dav-password"
        password.write_text(dav.password or "")
        for key, org_id in self.orgs.items():
            token = f"scale-token-{key}"
            state.add_organization(org_id, key)
            state.add_user(id=5000 + org_id, full_name=f"Sync {key}", email=None,
                           organizations=[org_id], token=token)
            state.seed(org_id, args.activities, seed=org_id)
            (self.config_dir / f"{key}.token").write_text(token)
            lines = [
                f'[source]\nbase_url = "{api}"\ntoken_file = "{key}.token"\n'
                f'organization_id = {org_id}\n\n[mapping]\ngeocoder = "none"\n'
            ]
            for n in range(args.calendars):
                url = dav.make_calendar(f"{key}-cal{n}")
                self.calendars[(key, f"cal{n}")] = url
                lines.append(
                    f'[[targets]]\nname = "cal{n}"\nurl = "{url}"\n'
                    f'username = "{dav.username}"\npassword_file = "{password}"\ntasks_as = "events"\n'
                )
            (self.config_dir / f"{key}.toml").write_text("\n".join(lines))

    def shared(self, *, interval: str, tick: str = "30s") -> None:
        (self.config_dir / "apexcal.toml").write_text(
            f'[state]\nurl = "{self.db_url}"\n\n'
            f'[sync]\ninterval = "{interval}"\nreconcile_interval = "1d"\njitter = "0s"\n'
            'shutdown_timeout = "10s"\n\n'
            f'[worker]\ntick = "{tick}"\nheartbeat = "2s"\nstalled_after = "6s"\n'
            'reaper_interval = "5s"\nmax_job_duration = "2m"\n\n[log]\nformat = "json"\n'
        )

    def apexcal(self, *argv: str) -> None:
        subprocess.run([sys.executable, "-m", "apexcal", *argv], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start_workers(self, count: int, concurrency: int, level: str = "warning") -> list[int]:
        before = self.registered()
        for _ in range(count):
            index = len(self.workers)
            with (self.root / f"worker-{index}.log").open("ab") as out:
                self.workers.append(subprocess.Popen(
                    [sys.executable, "-m", "apexcal", "worker", "--config-dir", str(self.config_dir),
                     "--concurrency", str(concurrency), "--log-level", level],
                    stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                ))
        wait_for(lambda: self.registered() >= before + count, 60, "workers registered")
        return [p.pid for p in self.workers[-count:]]

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.workers.clear()
        with self.engine.connect() as conn:
            conn.execute(text("DELETE FROM procrastinate_workers"))

    def sql(self, query: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(query)).scalar()

    def backend_pids(self) -> list[int]:
        """PostgreSQL server processes serving this database (the workers' pools, this bench's own)."""
        with self.engine.connect() as conn:
            return [int(r[0]) for r in conn.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            ))]

    def registered(self) -> int:
        return int(self.sql("SELECT count(*) FROM procrastinate_workers") or 0)

    def unfinished(self) -> int:
        return int(self.sql(
            "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        ) or 0)

    def subjects(self, org: str, target: str) -> list[str]:
        response = httpx.request(
            "REPORT", self.calendars[(org, target)], content=_QUERY, auth=self.dav.auth,
            headers={"Depth": "1", "Content-Type": "application/xml"}, timeout=30,
        )
        response.raise_for_status()
        root = ElementTree.fromstring(response.content)  # noqa: S314  (our own loopback server)
        found = []
        for node in root.iter("{urn:ietf:params:xml:ns:caldav}calendar-data"):
            for line in (node.text or "").splitlines():
                if line.startswith("SUMMARY:"):
                    found.append(line[len("SUMMARY:"):].strip())
        return found


def wait_for(check: Callable[[], bool], within: float, what: str, step: float = 0.05) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > within:
            raise SystemExit(f"timed out after {within:.0f} s waiting for {what}")
        time.sleep(step)
    return time.monotonic() - start


# --- part 1 -----------------------------------------------------------------------------


def record_no_change_requests(
    world: World, profile: bool = False
) -> dict[tuple[str, str], list[tuple[str, str, bytes | None, dict[str, str]]]]:
    """The CalDAV requests of one no-change cycle of every target, run in this process.

    With ``profile``, the second round runs under cProfile and the functions
    taking the most time are printed.
    """
    from apexcal.config.directory import load_config_dir
    from apexcal.daemon.jobs import api_client
    from apexcal.metrics import Metrics
    from apexcal.state import Store
    from apexcal.sync.caldav.discovery import CalendarCollection
    from apexcal.sync.caldav.session import DavSession
    from apexcal.sync.pull import PullResult
    from apexcal.sync.run import run_target_cycle

    recorded: list[tuple[str, str, bytes | None, dict[str, str]]] = []
    original = DavSession.request

    def recording(self: DavSession, method: str, href: str, *, content: bytes | None = None,
                  headers: dict[str, str] | None = None) -> httpx.Response:
        recorded.append((method, self.url_for(href), content, dict(headers or {})))
        return original(self, method, href, content=content, headers=headers)

    original_hook = CalendarCollection._on_response

    def recording_hook(self: CalendarCollection, response: Any, **kwargs: Any) -> None:
        # python-caldav's PROPFIND of the collection (once per cycle), through its own client.
        request = response.request
        body = request.body.encode() if isinstance(request.body, str) else request.body
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("depth", "content-type")}
        recorded.append((str(request.method), str(request.url), body, headers))
        original_hook(self, response, **kwargs)

    configs = load_config_dir(world.config_dir, resolve_secrets=True)
    out = {}
    cpu: list[float] = []
    DavSession.request = recording  # type: ignore[method-assign]
    CalendarCollection._on_response = recording_hook  # type: ignore[method-assign]
    try:
        with Store.open(configs.state_url) as base:
            # Twice: the first no-change cycle after the initial sync may still send an older
            # sync token; from the second on, every cycle sends the same requests.
            for round_ in range(2):
                cpu.clear()
                profiler = cProfile.Profile() if profile and round_ == 1 else None
                if profiler is not None:
                    profiler.enable()
                for org, config in configs:
                    store = base.for_organization(org)
                    for target in config.targets:
                        recorded.clear()
                        pulled = PullResult(listed=0, changed=0, deleted=0, reconciled=False,
                                            types_changed=False,
                                            seq=store.mirror_seq(config.source.organization_id))
                        began = time.thread_time()
                        with api_client(config, Metrics(), 60) as client:
                            summary = run_target_cycle(config, target, store, client=client, pulled=pulled)
                        cpu.append(time.thread_time() - began)
                        assert summary.created == summary.updated == summary.deleted == 0, summary
                        out[(org, target.name)] = list(recorded)
                if profiler is not None:
                    profiler.disable()
                    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    finally:
        DavSession.request = original  # type: ignore[method-assign]
        CalendarCollection._on_response = original_hook  # type: ignore[method-assign]
    print(f"one no-change cycle in this process, without the queue: "
          f"{1000 * statistics.median(cpu):.1f} ms CPU (median of {len(cpu)})")
    return out


def defer_cycles(world: World, rounds: int) -> int:
    from apexcal.worker.runner import make_app
    from apexcal.worker.tasks import SYNC_TARGET, target_lock

    app = make_app(world.db_url, "procrastinate", pool_size=2)
    count = 0
    with app.open():
        for _ in range(rounds):
            for org, target in world.calendars:
                app.configure_task(SYNC_TARGET, lock=target_lock(org, target)).defer(org=org, target=target)
                count += 1
    return count


def worker_run(world: World, workers: int, concurrency: int, rounds: int, dav_pid: int) -> dict[str, Any]:
    pids = world.start_workers(workers, concurrency)
    time.sleep(1.0)  # let the workers' start-up (imports, first fetch) settle before timing
    cpu_dav, cpu_workers = cpu_seconds(dav_pid), sum(cpu_seconds(p) for p in pids)
    backends = world.backend_pids()
    cpu_pg = sum(cpu_seconds(p) for p in backends)
    api_before = world.admin.counters()["total"]
    started = time.monotonic()
    jobs = defer_cycles(world, rounds)
    wait_for(lambda: world.unfinished() == 0, 600, "the queue to drain")
    seconds = time.monotonic() - started
    dav = cpu_seconds(dav_pid) - cpu_dav
    worker_cpu = sum(cpu_seconds(p) for p in pids) - cpu_workers
    pg_cpu = sum(cpu_seconds(p) for p in backends) - cpu_pg
    api = world.admin.counters()["total"] - api_before
    failed = int(world.sql(
        "SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'"
    ) or 0)
    with world.engine.connect() as conn:
        run_p50 = conn.execute(text(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM fin.at - st.at))"
            "  FROM procrastinate_jobs j"
            "  JOIN procrastinate_events st ON st.job_id = j.id AND st.type = 'started'"
            "  JOIN procrastinate_events fin ON fin.job_id = j.id AND fin.type = 'succeeded'"
            " WHERE j.task_name = 'apexcal.sync_target'"
        )).scalar()
    world.stop_workers()
    with world.engine.connect() as conn:
        conn.execute(text("DELETE FROM procrastinate_jobs"))
    return {
        "way": f"{workers} worker(s) × {concurrency}", "cycles": jobs, "seconds": seconds,
        "per_s": jobs / seconds, "dav_cpu": dav / seconds, "client_cpu": worker_cpu / seconds,
        "pg_cpu": pg_cpu / seconds, "api_requests": api, "failed": failed, "job_p50_ms": 1000 * float(run_p50 or 0),
    }


def raw_run(world: World, recorded: dict[tuple[str, str], list[Any]], threads: int, rounds: int,
            dav_pid: int) -> dict[str, Any]:
    work = [key for _ in range(rounds) for key in world.calendars]
    auth = httpx.BasicAuth(world.dav.username or "", world.dav.password or "")
    local = threading.local()

    def one(key: tuple[str, str]) -> int:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(auth=auth, timeout=30)
        for method, url, content, headers in recorded[key]:
            client.request(method, url, content=content, headers=headers).read()
        return len(recorded[key])

    cpu_dav, cpu_self = cpu_seconds(dav_pid), cpu_seconds(os.getpid())
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        requests = sum(pool.map(one, work))
    seconds = time.monotonic() - started
    return {
        "way": f"raw loop, {threads} threads", "cycles": len(work), "seconds": seconds,
        "per_s": len(work) / seconds, "dav_cpu": (cpu_seconds(dav_pid) - cpu_dav) / seconds,
        "client_cpu": (cpu_seconds(os.getpid()) - cpu_self) / seconds, "api_requests": 0,
        "failed": 0, "requests": requests,
    }


# --- part 2 -----------------------------------------------------------------------------


async def queue_overhead(world: World, total: int) -> dict[str, Any]:
    from apexcal.worker.runner import make_app

    app = make_app(world.db_url, "procrastinate", pool_size=2)

    @app.task(name="bench.noop", queue="bench")
    def noop(n: int) -> None:
        """Never run: the bench only defers and fetches."""

    async def fetch_latencies(count: int, worker_id: int) -> list[float]:
        found = []
        for _ in range(count):
            began = time.perf_counter()
            job = await app.job_manager.fetch_job(queues=["bench"], worker_id=worker_id)
            found.append((time.perf_counter() - began) * 1000)
            assert job is not None
        return found

    async with app.open_async():
        single = min(1000, total // 10)
        began = time.perf_counter()
        for n in range(single):
            await noop.defer_async(n=n)
        single_rate = single / (time.perf_counter() - began)
        began = time.perf_counter()
        for start in range(single, total, 1000):
            await noop.batch_defer_async(*({"n": n} for n in range(start, min(start + 1000, total))))
        batch_rate = (total - single) / (time.perf_counter() - began)
        worker_id = await app.job_manager.register_worker()
        full = await fetch_latencies(200, worker_id)
        await app.connector.execute_query_async(
            query="DELETE FROM procrastinate_jobs WHERE queue_name = 'bench' AND status = 'todo' "
                  "AND id NOT IN (SELECT id FROM procrastinate_jobs WHERE queue_name = 'bench' "
                  "AND status = 'todo' ORDER BY id LIMIT 250)"
        )
        nearly_empty = await fetch_latencies(200, worker_id)
        pings = []
        for _ in range(200):
            began = time.perf_counter()
            await app.connector.execute_query_one_async(query="SELECT 1 AS one")
            pings.append((time.perf_counter() - began) * 1000)
        await app.job_manager.unregister_worker(worker_id)
        await app.connector.execute_query_async(query="DELETE FROM procrastinate_jobs WHERE queue_name = 'bench'")

    def p(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1]

    return {
        "queued": total, "defer_single_per_s": single_rate, "defer_batch_per_s": batch_rate,
        "fetch_full_p50_ms": p(full, 50), "fetch_full_p95_ms": p(full, 95),
        "fetch_empty_p50_ms": p(nearly_empty, 50), "fetch_empty_p95_ms": p(nearly_empty, 95),
        "select1_p50_ms": p(pings, 50), "select1_p95_ms": p(pings, 95),
    }


# --- parts 3 and 4 ----------------------------------------------------------------------


def api_per_org(world: World, interval: float) -> dict[str, float]:
    world.admin.reset_counters()
    time.sleep(2 * interval)  # the measured window itself, not a synchronisation
    counts = dict.fromkeys(world.orgs, 0)
    for line in world.admin.requests():
        for key, org_id in world.orgs.items():
            if f"organization_id={org_id}" in line:
                counts[key] += 1
    return {key: n / 2 for key, n in counts.items()}


def open_cycles(world: World, index: int, org: str) -> bool:
    path = world.root / f"worker-{index}.log"
    started: set[str] = set()
    for raw in path.read_text(errors="replace").splitlines():
        if not raw.startswith("{"):
            continue
        event = json.loads(raw)
        if event.get("organization") != org:
            continue
        if event.get("event") == "sync.cycle_started":
            started.add(event["cycle_id"])
        elif event.get("event") in ("sync.cycle", "sync.cycle_failed", "sync.cycle_cancelled"):
            started.discard(event.get("cycle_id"))
    return bool(started)


def recovery(world: World, interval: float) -> dict[str, Any]:
    org = next(iter(world.orgs))
    want = []
    for activity in world.state.activities(world.orgs[org]):
        want.append(f"Recovered {activity['id']}")
        world.state.patch_activity(activity["id"], {"subject": want[-1]})
    want.sort()
    targets = [t for (o, t) in world.calendars if o == org]

    def converged() -> bool:
        return all(sorted(s for s in world.subjects(org, t) if s.startswith("Recovered")) == want
                   for t in targets)

    victim = None
    deadline = time.monotonic() + 4 * interval
    while victim is None and time.monotonic() < deadline:
        for index, proc in enumerate(world.workers):
            if proc.poll() is None and open_cycles(world, index, org):
                victim = index
                break
        time.sleep(0.02)
    caught = victim is not None
    victim = 0 if victim is None else victim
    world.workers[victim].send_signal(signal.SIGKILL)
    world.workers[victim].wait(timeout=10)
    seconds = wait_for(converged, 180, "convergence after SIGKILL", step=0.5)
    reaped = sum(
        raw.count('"worker.job_reaped"')
        for raw in (p.read_text(errors="replace") for p in world.root.glob("worker-*.log"))
    )
    return {"caught_mid_cycle": caught, "seconds_to_converge": seconds, "jobs_reaped": reaped}


# --- main -------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| way | cycles | seconds | cycles/s | Radicale CPU (cores) | client CPU (cores) "
           "| Radicale CPU ms/cycle | client CPU ms/cycle | PostgreSQL CPU ms/cycle | job p50 ms "
           "| API requests |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        per = 1000 * r["seconds"] / r["cycles"]
        out.append(f"| {r['way']} | {r['cycles']} | {r['seconds']:.2f} | {r['per_s']:.1f} | "
                   f"{r['dav_cpu']:.2f} | {r['client_cpu']:.2f} | {r['dav_cpu'] * per:.1f} | "
                   f"{r['client_cpu'] * per:.1f} | {r.get('pg_cpu', 0) * per:.1f} | "
                   f"{r.get('job_p50_ms', 0):.0f} | {r['api_requests']} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orgs", type=int, default=4)
    parser.add_argument("--calendars", type=int, default=6, help="per organization")
    parser.add_argument("--activities", type=int, default=30, help="per organization")
    parser.add_argument("--rounds", type=int, default=5, help="no-change cycles per calendar per run")
    parser.add_argument("--concurrency", type=int, default=2, help="jobs per worker")
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--skip-recovery", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="print where an in-process no-change cycle spends its time")
    args = parser.parse_args()
    log.configure("error")
    base = os.environ.get("APEXCAL_TEST_POSTGRES_URL", DEFAULT_PG)
    print(f"machine: {machine()}; load average at start {load_average()}")
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="apexcal-scale-")))
        db_url = stack.enter_context(scratch_database(base))
        dav = radicale_handle(root / "radicale")
        dav.start()
        stack.callback(dav.stop)
        assert dav._proc is not None
        dav_pid = dav._proc.pid
        state = EmulatorState()
        api = stack.enter_context(serve_in_thread(create_app(state)))
        world = World(args, db_url, dav, api, state, root)
        stack.callback(world.stop_workers)
        world.shared(interval="12h")
        print(f"{len(world.calendars)} calendars in {args.orgs} organizations, "
              f"{args.activities} activities each; converging …", flush=True)
        for key in world.orgs:
            world.apexcal("sync", "--config-dir", str(world.config_dir), "--org", key)
        recorded = record_no_change_requests(world, profile=args.profile)
        per_cycle = {len(v) for v in recorded.values()}
        methods = sorted({m for v in recorded.values() for m, *_ in v})
        print(f"a no-change cycle makes {per_cycle} CalDAV request(s) ({', '.join(methods)})")

        rows = [raw_run(world, recorded, 4 * args.concurrency, args.rounds, dav_pid)]
        for workers in (1, 2, 4):
            rows.append(worker_run(world, workers, args.concurrency, args.rounds, dav_pid))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
        rows.append(raw_run(world, recorded, 4 * args.concurrency, args.rounds, dav_pid))
        print("\n## no-change target cycles\n")
        print(table(rows))

        queue = asyncio.run(queue_overhead(world, args.queued))
        print("\n## queue overhead\n")
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in queue.items()}))

        result: dict[str, Any] = {"cycles": rows, "queue": queue}
        if not args.skip_recovery:
            interval = 10.0
            world.shared(interval=f"{int(interval)}s", tick="2s")
            world.start_workers(2, args.concurrency, level="info")
            time.sleep(interval + 2)  # one interval of normal running before counting
            per_org = api_per_org(world, interval)
            print("\n## API requests per organization per interval (10 s, quiet)\n")
            print(json.dumps(per_org))
            rec = recovery(world, interval)
            print("\n## recovery after SIGKILL\n")
            print(json.dumps(rec))
            result.update(api_per_org=per_org, recovery=rec)
        print(f"\nload average at end {load_average()}")
        print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
