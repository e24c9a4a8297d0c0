"""Benchmark: sync cycles against real Radicale and Xandikos, each beside a baseline from the same run.

For each server (started like the test fixtures, on loopback):

1. **Initial sync** of ``--count`` activities (emulator in this process) into a
   fresh calendar by one engine cycle — objects/s — beside a raw concurrent
   ``httpx`` PUT loop of the very same bytes (``If-None-Match: *``, same
   concurrency) into another fresh calendar on the same server; each twice,
   in the order engine, raw, raw, engine, so load drifting on a shared machine
   weighs on both alike; ``--reps`` repeats that block and the median ratio is
   printed (``--counts 300,1000`` runs several sizes).  Each engine cycle's
   timeline is printed from its own requests: when the pull ended, when the
   first and the last PUT were answered, and what came after the last PUT
   (the etag read-back).  Then, on that calendar and store, three no-change
   cycles: the best one's wall time beside its own CPU time (the thread that
   runs the cycle; a cycle that writes nothing starts no other thread, and the
   emulator and the server run elsewhere).
2. **No-change cycle** on a calendar of ``--big`` objects: API requests, CalDAV
   requests and seconds, beside the server's own sync-collection REPORT with
   the same token and the cycle's Depth-0 PROPFIND of the calendar (each timed
   alone; the PROPFIND reads the calendar's sync token, and a no-change cycle
   sends only it) and vdirsyncer's no-change re-sync of the same
   collection to a local directory (``pip install vdirsyncer``; bench only).
   The big calendar is set up once and kept between runs in ``--cache``: the
   engine's own bytes are written straight into the server's storage, then one
   engine cycle adopts them (rewriting those a server altered); the server's
   storage, the state database, the vdirsyncer status and the ports stay there.
3. **One-change cycle** on the same calendar: one activity changed in the CRM.

Run: ``.venv/bin/python bench/sync.py [--servers radicale,xandikos] [--count 1000] [--big 10000]``;
the initial sync alone: ``bench/sync.py --initial-only --counts 300,1000 --reps 3``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter as Counter_
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.caldav_servers import (  # noqa: E402
    CalDAVServerHandle,
    radicale_handle,
    start_on_free_port,
    xandikos_handle,
)

from apexcal import __version__, log  # noqa: E402  (after the path set-up)
from apexcal.apex.client import ApexClient  # noqa: E402
from apexcal.config import Config, TargetConfig, config_from_dict  # noqa: E402
from apexcal.emulator import DEMO_ORG_ID, EmulatorState, create_app, serve_in_thread  # noqa: E402
from apexcal.emulator.state import DEMO_TOKEN  # noqa: E402
from apexcal.errors import Unmappable  # noqa: E402
from apexcal.ical.mapping import object_for  # noqa: E402
from apexcal.state import Store  # noqa: E402
from apexcal.sync.caldav import CalDAVSink, default_sink_factory  # noqa: E402
from apexcal.sync.desired import mapping_options  # noqa: E402
from apexcal.sync.pull import pull_changes  # noqa: E402
from apexcal.sync.run import run_target_cycle  # noqa: E402
from apexcal.sync.sink import Sink  # noqa: E402
from apexcal.sync.summary import CycleSummary  # noqa: E402

ANCHOR = date(2026, 11, 1)  # seeded data must be identical from run to run
MAKERS: dict[str, Callable[[Path], CalDAVServerHandle]] = {
    "radicale": radicale_handle,
    "xandikos": xandikos_handle,
}


def _config(api: str, url: str, handle: CalDAVServerHandle, state: Path, concurrency: int) -> Config:
    target: dict[str, object] = {"name": "bench", "url": url}
    if handle.username:
        target.update(username=handle.username, password=handle.password)
    return config_from_dict(
        {
            # The timeout covers CalDAV requests too: a first full listing of a
            # large Radicale collection takes tens of seconds on a loaded machine.
            "source": {
                "base_url": api,
                "token": DEMO_TOKEN,
                "organization_id": DEMO_ORG_ID,
                "timeout": "300s",
            },
            "state": {"url": f"sqlite:///{state}"},
            "sync": {"concurrency": concurrency, "reconcile_interval": "1h"},
            "mapping": {"geocoder": "none"},
            "targets": [target],
        }
    )


class Counter:
    """Counts requests by their ``on_request`` callbacks, and notes when each CalDAV request was answered."""

    def __init__(self) -> None:
        self.api: list[str] = []
        self.api_done = 0.0
        self.caldav: list[tuple[float, str]] = []
        self.started = self.ended = 0.0

    def on_api(self, route: str, status: int) -> None:
        self.api.append(route)
        self.api_done = time.perf_counter()

    def sink_factory(self, target: TargetConfig, *, concurrency: int, timeout: float, on_request: Callable[[str, int], None] | None) -> Sink:
        """The engine's own sink, with each request's answer time noted."""

        def noted(method: str, status: int) -> None:
            self.caldav.append((time.perf_counter(), method))
            if on_request is not None:
                on_request(method, status)

        return default_sink_factory(target, concurrency=concurrency, timeout=timeout, on_request=noted)


@dataclass
class Timeline:
    """When things happened in one engine cycle, in seconds from its start."""

    seconds: float
    pull: float
    first_put: float
    last_put: float
    after: list[str]

    def line(self) -> str:
        after = ", ".join(f"{n} {m}" for m, n in sorted(Counter_(self.after).items())) or "nothing"
        return (
            f"pull done {self.pull:.2f} s, first PUT answered {self.first_put:.2f} s, last PUT answered "
            f"{self.last_put:.2f} s, cycle ended {self.seconds:.2f} s (after the last PUT: {after}, "
            f"{self.seconds - self.last_put:.2f} s)"
        )


def _cycle(config: Config, store: Store, api: str, counter: Counter) -> CycleSummary:
    return _timed_cycle(config, store, api, counter)[0]


def _timed_cycle(config: Config, store: Store, api: str, counter: Counter) -> tuple[CycleSummary, float]:
    """One cycle and the CPU seconds of this thread during it (the emulator serves from other threads)."""
    counter.api.clear()
    counter.caldav.clear()
    with ApexClient(api, DEMO_TOKEN, DEMO_ORG_ID, on_request=counter.on_api) as client:
        cpu = time.thread_time()
        counter.started = time.perf_counter()
        summary = run_target_cycle(config, config.targets[0], store, client=client, sink_factory=counter.sink_factory)
        counter.ended = time.perf_counter()
        return summary, time.thread_time() - cpu


def _timeline(counter: Counter) -> Timeline:
    start = counter.started
    puts = [t for t, m in counter.caldav if m == "PUT"]
    last = max(puts, default=start)
    return Timeline(
        seconds=counter.ended - start,
        pull=counter.api_done - start,
        first_put=min(puts, default=start) - start,
        last_put=last - start,
        after=[m for t, m in counter.caldav if t > last],
    )


def _best_no_change(config: Config, store: Store, api: str, counter: Counter, runs: int = 3) -> tuple[CycleSummary, float, int]:
    """The fastest of ``runs`` cycles with nothing to do: its summary, its CPU seconds, the most API requests seen."""
    best: tuple[CycleSummary, float] | None = None
    api_requests = 0
    for _ in range(runs):
        summary, cpu = _timed_cycle(config, store, api, counter)
        api_requests = max(api_requests, len(counter.api))
        if best is None or summary.seconds < best[0].seconds:
            best = (summary, cpu)
    assert best is not None
    return best[0], best[1], api_requests


def _mapped(config: Config, store: Store) -> dict[str, bytes]:
    """The engine's bytes for every mirrored activity (href name → data)."""
    options = mapping_options(config, config.targets[0])
    types = store.types(DEMO_ORG_ID)
    out: dict[str, bytes] = {}
    for activity in store.iter_activities(DEMO_ORG_ID):
        try:
            obj = object_for(activity, types, options)
        except Unmappable:
            continue  # skipped by the engine too
        out[obj.href_name] = obj.data
    return out


CPU: dict[str, list[tuple[float, float]]] = {}
"""Per way ("raw", "engine"): (client, server) CPU milliseconds per object of each run."""


def _note_cpu(way: str, before: tuple[float, float], handle: CalDAVServerHandle, objects: int) -> None:
    after = _cpu(handle)
    if objects:
        CPU.setdefault(way, []).append(
            (1000 * (after[0] - before[0]) / objects, 1000 * (after[1] - before[1]) / objects)
        )


def _cpu(handle: CalDAVServerHandle) -> tuple[float, float]:
    """CPU seconds used so far by this process (engine or raw loop, and the emulator) and by the server."""
    server = 0.0
    proc = handle._proc  # the bench reads the server process's own CPU
    if proc is not None:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return time.process_time(), server


def _raw_put_loop(url: str, objects: dict[str, bytes], handle: CalDAVServerHandle, concurrency: int) -> float:
    """PUT every object with If-None-Match: * from ``concurrency`` threads; return seconds."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(auth=handle.auth, limits=limits, timeout=60) as client:

        def put(item: tuple[str, bytes]) -> None:
            name, data = item
            for _ in range(8):  # Xandikos answers 423 to concurrent writes: retry like the engine
                r = client.put(
                    url + name,
                    content=data,
                    headers={"If-None-Match": "*", "Content-Type": "text/calendar; charset=utf-8"},
                )
                if r.status_code != 423:
                    break
                time.sleep(0.05)
            if r.status_code not in (201, 204):
                raise RuntimeError(f"raw PUT {name}: {r.status_code}")

        started = time.perf_counter()
        cpu = _cpu(handle)
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(put, objects.items()))
        seconds = time.perf_counter() - started
        _note_cpu("raw", cpu, handle, len(objects))
        return seconds


def _engine_initial(
    handle: CalDAVServerHandle, count: int, concurrency: int, *, no_change: bool = False
) -> tuple[CycleSummary, Timeline, float, dict[str, bytes]]:
    """One initial sync into a fresh calendar with a fresh store: summary, timeline, mapping seconds, bytes.

    The mapping is timed alone after the cycle (every activity mapped once
    more, as the cycle maps it).  With ``no_change``, three no-change cycles
    follow on the same calendar and store, and the best one's wall and CPU
    time are printed.
    """
    state = EmulatorState()
    state.seed(DEMO_ORG_ID, count, seed=3, anchor=ANCHOR)
    with serve_in_thread(create_app(state)) as api, tempfile.TemporaryDirectory() as tmp:
        url = handle.make_calendar("initial")
        config = _config(api, url, handle, Path(tmp) / "state.db", concurrency)
        with Store.open(config.state.url) as store:
            counter = Counter()
            cpu = _cpu(handle)
            summary = _cycle(config, store, api, counter)
            _note_cpu("engine", cpu, handle, summary.created)
            timeline = _timeline(counter)
            if no_change:
                _cycle(config, store, api, counter)  # warm-up: the first etags recorded, caches filled
                best, cpu, api_requests = _best_no_change(config, store, api, counter)
                print(
                    f"  no-change cycle on the {count}-activity scope just synced: {best.seconds:.3f} s wall, "
                    f"{cpu:.3f} s CPU of the cycle's own thread (best of 3; {api_requests} API, "
                    f"{best.caldav_requests} CalDAV requests)"
                )
            started = time.perf_counter()
            objects = _mapped(config, store)
            mapping = time.perf_counter() - started
    return summary, timeline, mapping, objects


def initial(handle: CalDAVServerHandle, count: int, concurrency: int, reps: int = 1, *, no_change: bool = True) -> float:
    """Part 1: the engine's initial sync beside the raw PUT loop, in A-B-B-A order against drifting load.

    Repeated ``reps`` times; returns the median ratio (engine objects/s ÷ raw objects/s).
    """
    ratios: list[float] = []
    rates: list[tuple[float, float]] = []
    for rep in range(reps):
        first, line1, mapping1, objects = _engine_initial(handle, count, concurrency, no_change=no_change and rep == 0)
        raw1 = _raw_put_loop(handle.make_calendar("raw"), objects, handle, concurrency)
        raw2 = _raw_put_loop(handle.make_calendar("raw"), objects, handle, concurrency)
        second, line2, mapping2, _ = _engine_initial(handle, count, concurrency)
        engine_s = first.seconds + second.seconds
        raw_s = raw1 + raw2
        created = first.created + second.created
        engine_rate = created / engine_s
        raw_rate = 2 * len(objects) / raw_s
        ratios.append(engine_rate / raw_rate)
        rates.append((engine_rate, raw_rate))
        print(
            f"  [{rep + 1}/{reps}] initial sync of {count} (order engine-raw-raw-engine): engine {first.seconds:.2f} + "
            f"{second.seconds:.2f} s = {engine_rate:.1f} objects/s (whole cycle); raw concurrent PUT loop "
            f"{raw1:.2f} + {raw2:.2f} s = {raw_rate:.1f}/s; ratio {engine_rate / raw_rate:.3f}; "
            f"load {os.getloadavg()[0]:.1f}"
        )
        for n, line in ((1, line1), (2, line2)):
            print(f"      engine {n}: {line.line()}")
        print(f"      mapping the {len(objects)} objects alone: {mapping1:.2f} s, {mapping2:.2f} s")
        ways = {way: runs[-2:] for way, runs in CPU.items()}
        print(
            "      CPU per object (this process, i.e. the client and the in-process emulator / the server): "
            + "; ".join(
                f"{way} " + ", ".join(f"{c:.1f} / {sv:.1f} ms" for c, sv in runs) for way, runs in ways.items()
            )
        )
    median = statistics.median(ratios)
    engine_med = statistics.median(e for e, _ in rates)
    raw_med = statistics.median(r for _, r in rates)
    print(
        f"  RESULT {count} objects: raw concurrent PUT loop {raw_med:.1f} objects/s, apexcal initial sync "
        f"{engine_med:.1f} objects/s, ratio {median:.3f} (median of {reps}: "
        f"{', '.join(f'{r:.3f}' for r in ratios)}), load average {os.getloadavg()[0]:.1f}"
    )
    return median


def _persistent_handle(kind: str, root: Path) -> CalDAVServerHandle:
    meta = root / "handle.json"
    if meta.exists():
        saved = json.loads(meta.read_text())
        saved["root"] = Path(saved["root"])
        return CalDAVServerHandle(**saved)
    handle = MAKERS[kind](root)
    doc = {k: v for k, v in asdict(handle).items() if not k.startswith("_")}
    doc["root"] = str(doc["root"])
    meta.write_text(json.dumps(doc))
    return handle


def _vdirsyncer(root: Path, url: str, handle: CalDAVServerHandle) -> list[str]:
    """A vdirsyncer config syncing the calendar at ``url`` to a local directory; return its command."""
    exe = shutil.which("vdirsyncer", path=str(Path(sys.executable).parent))
    if exe is None:
        return []
    vroot = root / "vdirsyncer"
    (vroot / "local").mkdir(parents=True, exist_ok=True)
    auth = ""
    if handle.username:
        auth = f'username = "{handle.username}"\npassword = "{handle.password}"\n'
    (vroot / "config").write_text(
        f"""[general]
status_path = "{vroot / 'status'}"

[pair bench]
a = "bench_remote"
b = "bench_local"
collections = null
conflict_resolution = "a wins"

[storage bench_remote]
type = "caldav"
url = "{url}"
{auth}
[storage bench_local]
type = "filesystem"
path = "{vroot / 'local'}"
fileext = ".ics"
"""
    )
    return [exe, "--config", str(vroot / "config"), "sync"]


def big(handle: CalDAVServerHandle, root: Path, count: int, concurrency: int, *, touch: bool) -> None:
    """Parts 2 and 3: no-change and one-change cycles on a calendar of ``count`` objects."""
    meta_path = root / "big.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    state = EmulatorState()
    state.seed(DEMO_ORG_ID, count, seed=7, anchor=ANCHOR)
    counter = Counter()
    with serve_in_thread(create_app(state)) as api:
        if meta.get("count") != count:
            # A new set-up starts from an empty state database and vdirsyncer status.
            for stale in (root / "state.db", root / "state.db-wal", root / "state.db-shm"):
                stale.unlink(missing_ok=True)
            shutil.rmtree(root / "vdirsyncer", ignore_errors=True)
            meta = {}
            url = handle.make_calendar("big")
            config = _config(api, url, handle, root / "state.db", concurrency)
            with Store.open(config.state.url) as store, ApexClient(api, DEMO_TOKEN, DEMO_ORG_ID) as client:
                pull_changes(config, store, client)
                store.upsert_types(DEMO_ORG_ID, client.list_activity_types())
                objects = _mapped(config, store)
                started = time.perf_counter()
                handle.seed(url, objects)
                print(f"  set-up: {len(objects)} objects written into the storage in {time.perf_counter() - started:.1f} s")
                first = _cycle(config, store, api, counter)
                print(f"  set-up: one-time engine cycle adopted {first.adopted}, rewrote {first.updated} in {first.seconds:.1f} s")
            meta = {"count": count, "url": url}
            meta_path.write_text(json.dumps(meta))
        url = meta["url"]
        config = _config(api, url, handle, root / "state.db", concurrency)
        with Store.open(config.state.url) as store:
            if touch:
                # The seed gives hundreds of activities one and the same latest
                # updated_at; one ordinary change moves the watermark past them, as
                # the trickle of a live CRM does (see bench/README.md).
                state.patch_activity(state.activities(DEMO_ORG_ID)[1]["id"], {"subject": "Touched"})
            warm = _cycle(config, store, api, counter)
            print(f"  warm-up cycle: {warm.line()} api={len(counter.api)} caldav={warm.caldav_requests}")
            best, cpu, api_requests = _best_no_change(config, store, api, counter)
            token = store.target_state("bench").sync_token
            report = _report_time(url, handle, token)
            propfind = _propfind_time(url, handle)
            costs = ", ".join(f"{name} {t:.3f} s" for name, t in _property_times(url, handle).items())
            print(f"  Depth-0 PROPFIND of the calendar asking one property (best of 3): {costs}")
            print(
                f"  no-change cycle ({count} objects): {api_requests} API requests, {best.caldav_requests} CalDAV "
                f"requests, {best.seconds:.3f} s (best of 3; {cpu:.3f} s CPU of the cycle's thread); "
                f"the server's sync-collection REPORT alone: {report:.3f} s; the cycle's PROPFIND of the "
                f"calendar alone: {propfind:.3f} s"
            )
            cmd = _vdirsyncer(root, url, handle)
            if cmd:
                if not meta.get("vdirsyncer"):
                    started = time.perf_counter()
                    discover = [*cmd[:-1], "discover", "bench"]
                    subprocess.run(discover, check=True, capture_output=True, input=b"y\ny\n")
                    subprocess.run(cmd, check=True, capture_output=True)
                    print(f"  set-up: vdirsyncer's first sync took {time.perf_counter() - started:.1f} s")
                    meta["vdirsyncer"] = True
                    meta_path.write_text(json.dumps(meta))
                times = []
                for _ in range(3):
                    started = time.perf_counter()
                    subprocess.run(cmd, check=True, capture_output=True)
                    times.append(time.perf_counter() - started)
                cli = _apexcal_sync_time(config, root)
                print(
                    f"  vdirsyncer no-change re-sync: {min(times):.3f} s (best of 3, process included); "
                    f"ours in-process {best.seconds:.3f} s = {min(times) / best.seconds:.1f}× faster; "
                    f"'apexcal sync' as a process: {cli:.3f} s"
                )
            else:
                print("  vdirsyncer not installed: .venv/bin/pip install vdirsyncer")
            live = state.activities(DEMO_ORG_ID)
            if not live:
                print("  one-change cycle: skipped (no activities: --big 0)")
                return
            first_id = live[0]["id"]
            state.patch_activity(first_id, {"subject": "Benchmark change"})
            one = _cycle(config, store, api, counter)
            put = _raw_rewrite_time(url, handle, store)
            print(
                f"  one-change cycle: {one.updated} updated, {len(counter.api)} API requests, "
                f"{one.caldav_requests} CalDAV requests, {one.seconds:.3f} s; one raw PUT (If-Match) of an "
                f"object of this collection alone: {put:.3f} s"
            )


def _raw_rewrite_time(url: str, handle: CalDAVServerHandle, store: Store) -> float:
    """Seconds the server takes for one conditional PUT into this collection (same bytes back)."""
    record = next(iter(store.records("bench").values()))
    with CalDAVSink(url, username=handle.username, password=handle.password) as sink:
        obj = sink.multiget([record.href])[record.href]
        with httpx.Client(auth=handle.auth, timeout=300) as client:
            started = time.perf_counter()
            r = client.put(
                sink.url_for(record.href),
                content=obj.data,
                headers={"If-Match": obj.etag, "Content-Type": "text/calendar; charset=utf-8"},
            )
            seconds = time.perf_counter() - started
    if r.status_code not in (200, 201, 204):
        raise RuntimeError(f"raw PUT: {r.status_code}")
    # The rewrite changed the etag: let the next cycle record it (it makes no PUT).
    return seconds


def _report_time(url: str, handle: CalDAVServerHandle, token: str | None) -> float:
    with CalDAVSink(url, username=handle.username, password=handle.password) as sink:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            sink.changes(token)
            best = min(best, time.perf_counter() - started)
    return best


def _propfind_time(url: str, handle: CalDAVServerHandle) -> float:
    """Best of 3: the Depth-0 PROPFIND every cycle makes of the calendar (with its sync token)."""
    with CalDAVSink(url, username=handle.username, password=handle.password) as sink:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            sink.ensure_calendar()
            best = min(best, time.perf_counter() - started)
    return best


_PROPERTIES = {
    "resourcetype": "<D:resourcetype/>",
    "sync-token": "<D:sync-token/>",
    "getctag": "<CS:getctag/>",
    "getetag": "<D:getetag/>",
    "getlastmodified": "<D:getlastmodified/>",
}


def _property_times(url: str, handle: CalDAVServerHandle) -> dict[str, float]:
    """Best of 3 per property: what each candidate "has anything changed" probe costs the server."""
    times: dict[str, float] = {}
    with httpx.Client(auth=handle.auth, timeout=300) as client:
        for name, prop in _PROPERTIES.items():
            body = (
                '<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:" '
                f'xmlns:CS="http://calendarserver.org/ns/"><D:prop>{prop}</D:prop></D:propfind>'
            )
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                r = client.request(
                    "PROPFIND", url, content=body,
                    headers={"Depth": "0", "Content-Type": "application/xml; charset=utf-8"},
                )
                best = min(best, time.perf_counter() - started)
            if r.status_code != 207:
                raise RuntimeError(f"PROPFIND {name}: {r.status_code}")
            times[name] = best
    return times


def _apexcal_sync_time(config: Config, root: Path) -> float:
    """Wall time of ``apexcal sync`` as a process on the same state and calendar (no change)."""
    target = config.targets[0]
    path = root / "apexcal.toml"
    secret = root / "token"
    secret.write_text(DEMO_TOKEN)
    lines = [
        "[source]",
        f'base_url = "{config.source.base_url}"',
        f'token_file = "{secret}"',
        f"organization_id = {DEMO_ORG_ID}",
        "[state]",
        f'url = "{config.state.url}"',
        "[mapping]",
        'geocoder = "none"',
        "[[targets]]",
        f'name = "{target.name}"',
        f'url = "{target.url}"',
    ]
    if target.username and target.password:
        pw = root / "dav-password"
        pw.write_text(target.password.get_secret_value())
        lines += [f'username = "{target.username}"', f'password_file = "{pw}"']
    path.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("APEXCAL_")}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "apexcal", "sync", "--config", str(path), "--log-level", "warning"], check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def main() -> None:
    """Run the benchmark on each server and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="radicale,xandikos")
    parser.add_argument("--count", type=int, default=1000, help="activities of the initial sync")
    parser.add_argument("--counts", default="", help="several sizes of the initial sync, e.g. 300,1000 (overrides --count)")
    parser.add_argument("--reps", type=int, default=1, help="engine-raw-raw-engine blocks per size (median printed)")
    parser.add_argument("--initial-only", action="store_true", help="only the initial sync (no kept big calendar)")
    parser.add_argument("--big", type=int, default=10_000, help="objects of the no-change calendar")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "apexcal-bench-sync")
    parser.add_argument("--skip-initial", action="store_true")
    parser.add_argument(
        "--touch",
        action="store_true",
        help="change one activity before the warm-up cycle, moving the watermark past the seed's block",
    )
    args = parser.parse_args()
    log.configure("warning")
    print(
        f"apexcal {__version__}, Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for kind in args.servers.split(","):
        print(f"{kind}:")
        if args.initial_only:  # a fresh server in a temporary directory, removed after
            with tempfile.TemporaryDirectory() as tmp:
                handle = start_on_free_port(MAKERS[kind], Path(tmp))
                try:
                    _initial_sizes(handle, args)
                finally:
                    handle.stop()
            continue
        root = args.cache / kind
        root.parent.mkdir(parents=True, exist_ok=True)
        handle = _persistent_handle(kind, root)
        handle.start()
        try:
            if not args.skip_initial:
                _initial_sizes(handle, args)
            big(handle, root, args.big, args.concurrency, touch=args.touch)
        finally:
            handle.stop()


def _initial_sizes(handle: CalDAVServerHandle, args: argparse.Namespace) -> None:
    counts = [int(c) for c in args.counts.split(",")] if args.counts else [args.count]
    for count in counts:
        initial(handle, count, args.concurrency, args.reps, no_change=not args.initial_only)


if __name__ == "__main__":
    main()
