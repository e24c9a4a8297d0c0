"""Benchmark: a first import as one whole-calendar PUT on Radicale, beside the per-object PUT loop of the same run.

Radicale accepts a ``PUT`` of one ``VCALENDAR`` on a collection URL: it
replaces the collection's contents with one item per UID.  This script
measures that raw approach against the loop apexcal runs today, on the same
bytes and the same server:

* **per-object**: a concurrent ``httpx`` PUT loop (``If-None-Match: *``,
  ``--concurrency`` at a time) of the engine's own objects into a fresh
  calendar (MKCALENDAR), then one PROPFIND (Depth 1) for the etags;
* **bulk**: the same objects' components (each ``VTIMEZONE`` once) in one
  ``VCALENDAR`` PUT on another fresh calendar, then one PROPFIND (Depth 1)
  for the hrefs and etags the server made.

Each is timed twice in the order per-object, bulk, bulk, per-object, so load
drifting on a shared machine weighs on both alike; the better of each pair is
printed.  It then compares what the server holds both ways: the set of hrefs
and each object's bytes by UID (calendar-multiget), printing the first
difference it finds — the bulk path may only be taken by the product where
the end state equals the per-object one.

Run: ``.venv/bin/python bench/bulk.py [--counts 1000,5000] [--concurrency 4] [--timezone Europe/Berlin]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sync import ANCHOR, _config, _mapped, _raw_put_loop  # noqa: E402
from tests.fixtures.caldav_servers import CalDAVServerHandle, radicale_handle  # noqa: E402

from apexcal import __version__, log  # noqa: E402  (after the path set-up)
from apexcal.apex.client import ApexClient  # noqa: E402
from apexcal.emulator import DEMO_ORG_ID, EmulatorState, create_app, serve_in_thread  # noqa: E402
from apexcal.emulator.state import DEMO_TOKEN  # noqa: E402
from apexcal.state import Store  # noqa: E402
from apexcal.sync.caldav import CalDAVSink  # noqa: E402
from apexcal.sync.pull import pull_changes  # noqa: E402
from apexcal.sync.sink import uid_of  # noqa: E402

_ICS = "text/calendar; charset=utf-8"


def _objects(handle: CalDAVServerHandle, count: int, timezone: str) -> dict[str, bytes]:
    """The engine's bytes for ``count`` seeded activities (href name → data), times in ``timezone``."""
    state = EmulatorState()
    state.seed(DEMO_ORG_ID, count, seed=3, anchor=ANCHOR)
    with serve_in_thread(create_app(state)) as api, tempfile.TemporaryDirectory() as tmp:
        config = _config(api, handle.make_calendar_url("unused"), handle, Path(tmp) / "s.db", 4)
        config = config.model_copy(update={"source": config.source.model_copy(update={"timezone": timezone})})
        with Store.open(config.state.url) as store, ApexClient(api, DEMO_TOKEN, DEMO_ORG_ID) as client:
            pull_changes(config, store, client)
            return _mapped(config, store)


def _components(data: bytes) -> list[bytes]:
    """The top-level components of one VCALENDAR body (CRLF lines), each with its BEGIN/END lines."""
    lines = data.split(b"\r\n")
    out: list[bytes] = []
    depth, current = 0, []
    for line in lines[1:]:
        if line.startswith(b"BEGIN:"):
            depth += 1
        if depth:
            current.append(line)
        if line.startswith(b"END:"):
            depth -= 1
            if depth == 0:
                out.append(b"\r\n".join(current) + b"\r\n")
                current = []
    return out


def whole_calendar(objects: dict[str, bytes]) -> bytes:
    """One VCALENDAR holding every object's components, each distinct VTIMEZONE once."""
    first = next(iter(objects.values())).split(b"\r\n")
    head: list[bytes] = []
    for line in first[1:]:  # the calendar's own properties: up to its first component
        if line.startswith(b"BEGIN:"):
            break
        head.append(line)
    seen_tz: set[bytes] = set()
    parts = [b"BEGIN:VCALENDAR\r\n", *(ln + b"\r\n" for ln in head)]
    for data in objects.values():
        for comp in _components(data):
            if comp.startswith(b"BEGIN:VTIMEZONE"):
                if comp in seen_tz:
                    continue
                seen_tz.add(comp)
            parts.append(comp)
    parts.append(b"END:VCALENDAR\r\n")
    return b"".join(parts)


def _listing(handle: CalDAVServerHandle, url: str) -> dict[str, str]:
    with CalDAVSink(url, username=handle.username, password=handle.password) as sink:
        return sink.listing()


def per_object(handle: CalDAVServerHandle, objects: dict[str, bytes], concurrency: int) -> tuple[float, str]:
    url = handle.make_calendar("perobject")
    started = time.perf_counter()
    _raw_put_loop(url, objects, handle, concurrency)
    listed = _listing(handle, url)
    seconds = time.perf_counter() - started
    if len(listed) != len(objects):
        raise RuntimeError(f"per-object: {len(listed)} objects listed, {len(objects)} sent")
    return seconds, url


def bulk(handle: CalDAVServerHandle, objects: dict[str, bytes]) -> tuple[float, str]:
    url = handle.make_calendar("bulk")
    started = time.perf_counter()
    body = whole_calendar(objects)
    r = httpx.put(url, content=body, auth=handle.auth, headers={"Content-Type": _ICS}, timeout=600)
    if r.status_code not in (201, 204):
        raise RuntimeError(f"bulk PUT answered {r.status_code}: {r.text[:300]}")
    put = time.perf_counter() - started
    listed = _listing(handle, url)
    seconds = time.perf_counter() - started
    print(f"    bulk run: PUT {put:.2f} s, PROPFIND {seconds - put:.2f} s")
    if len(listed) != len(objects):
        raise RuntimeError(f"bulk: {len(listed)} objects listed, {len(objects)} sent")
    return seconds, url


def _by_uid(handle: CalDAVServerHandle, url: str) -> tuple[set[str], dict[str, bytes]]:
    with CalDAVSink(url, username=handle.username, password=handle.password) as sink:
        fetched = sink.multiget(sink.listing())
    names = {h.rsplit("/", 1)[1] for h in fetched}
    return names, {uid_of(o.data): o.data for o in fetched.values()}


def compare(handle: CalDAVServerHandle, one: str, other: str) -> None:
    """Print whether both calendars hold the same hrefs and the same bytes per UID."""
    names_a, a = _by_uid(handle, one)
    names_b, b = _by_uid(handle, other)
    print(f"  hrefs: {'same member names' if names_a == names_b else 'DIFFERENT member names'}"
          f" ({len(names_a ^ names_b)} differ; e.g. {sorted(names_b - names_a)[:1]})")
    differ = [u for u in a if a[u] != b.get(u)]
    print(f"  bytes by UID: {len(a) - len(differ)} of {len(a)} identical")
    kinds: dict[tuple[tuple[bytes, ...], tuple[bytes, ...]], int] = {}
    for uid in differ:
        la, lb = a[uid].split(b"\r\n"), b.get(uid, b"").split(b"\r\n")
        key = (tuple(ln for ln in la if ln not in lb), tuple(ln for ln in lb if ln not in la))
        kinds[key] = kinds.get(key, 0) + 1
    for (only_a, only_b), n in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {n} objects differ by: per-object only {list(only_a)[:6]}; bulk only {list(only_b)[:6]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1000,5000")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--timezone", default="UTC", help="[source] timezone of the mapped activities")
    args = parser.parse_args()
    log.configure("warning")
    print(f"apexcal {__version__}, Python {platform.python_version()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        handle = radicale_handle(Path(tmp), fsync=True)
        handle.start()
        try:
            for count in (int(c) for c in args.counts.split(",")):
                objects = _objects(handle, count, args.timezone)
                size = len(whole_calendar(objects))
                print(f"\nRadicale, {len(objects)} objects ({size / 1e6:.1f} MB as one VCALENDAR), "
                      f"per-object concurrency {args.concurrency}, times in {args.timezone}")
                p1, purl = per_object(handle, objects, args.concurrency)
                b1, burl = bulk(handle, objects)
                b2, _ = bulk(handle, objects)
                p2, _ = per_object(handle, objects, args.concurrency)
                p, b = min(p1, p2), min(b1, b2)
                n = len(objects)
                print(f"  per-object PUT loop + PROPFIND: {p:.2f} s, {n / p:.0f} objects/s (runs {p1:.2f}, {p2:.2f})")
                print(f"  one whole-calendar PUT + PROPFIND: {b:.2f} s, {n / b:.0f} objects/s (runs {b1:.2f}, {b2:.2f})")
                print(f"  bulk / per-object: {p / b:.1f}x   load now {os.getloadavg()[0]:.2f}")
                compare(handle, purl, burl)
                handle.delete_made_calendars()
        finally:
            handle.stop()


if __name__ == "__main__":
    main()
