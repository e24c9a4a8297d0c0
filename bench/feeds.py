"""Benchmark: build a feed of N events, then serve it — against baselines in the same run.

Build.  The state store (SQLite in a temporary directory) is filled with N
seeded activities whose dates all fall inside the feed's window, then, each
in a fresh interpreter so memory figures do not mix:

* ``build_all_feeds`` — first build (writes the file) and a rebuild over the
  same data (compares, does not write), with the process's peak RSS, and once
  more under ``tracemalloc`` for the peak of Python allocations;
* baseline — the same activities read from the store into a list, mapped with
  the same options, every component added to one icalendar ``Calendar``
  (sorted by UID) and serialized whole: the in-memory way.

Serve.  The built file is served by the project's feed server
(``apexcal.serve.create_app`` under the product's uvicorn set-up —
``make_server``: httptools, access log off, revalidations answered from
memory by the protocol itself — one process, tokens from the same SQLite
store held for ``[server] token_cache``'s default), by the path of ``apexcal
serve`` (the same bytes stored in the database as a worker stores them,
served by version with the token cache and counted in its metrics; SQLite
here, as the store is), by ``--processes`` such servers sharing one port with
``SO_REUSEPORT`` as ``[server] processes`` runs them, and by nginx (one
worker, ``sendfile``, ``gzip_static`` with the same gzip bytes beside the
file).  For 304s only, beside them: the same database server with every
request through the ASGI endpoint (the protocol's own 304s turned off), the
floors — the smallest ASGI app answering a constant 304 under the same
uvicorn set-up, and under granian (ASGI, and granian's own RSGI) — and, when
granian is installed, the feed server and the database path under granian
(ASGI; one worker, one runtime thread).  All are up at once and measured in
turn, ``--rounds`` times, the order reversed every other round; ``wrk``
measures full ``200`` answers and ``304`` answers to ``If-None-Match``, over
loopback only, for a bounded time each.  Each rate is the median of its
rounds and each ratio the median of the rounds' rate over nginx's in the
same round (gzip 200s over nginx's ``gzip_static`` 200s), with their range.
``--serve-only`` skips the build figures (one unmeasured build).
Needs ``wrk`` and ``nginx`` (Debian: ``apt-get install -y wrk nginx-light``).

Run: ``.venv/bin/python bench/feeds.py [--count 10000] [--seconds 5] [--connections 8] [--rounds 3] [--processes 2] [--serve-only]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ORG = 27
DB_ORG = "bench"
# [server] token_cache's default.
TOKEN_CACHE_S = 30.0
TODAY = date(2026, 6, 15)


def config_dict(state_url: str, feed_path: Path) -> dict[str, Any]:
    """The config of the benchmark: one public feed with a window wide enough for every event."""
    return {
        "source": {
            "base_url": "https://api.achieveapex.com",
            "token": "unused",
            "organization_id": ORG,
            "timezone": "Europe/Berlin",
        },
        "state": {"url": state_url},
        # The feed machinery, not the geocoder: loading the offline gazetteer is a fixed
        # cost (seconds, ~80 MiB) whatever the size of the feed.
        "mapping": {"geocoder": "none"},
        "feeds": [
            {
                "name": "team",
                "path": str(feed_path),
                "window": {"past_days": 3660, "future_days": 3660},
                "calendar_name": "Team",
                "color": "#3B82F6",
            }
        ],
    }


def maxrss_mib() -> float:
    """This process's peak resident set size so far, in MiB.

    Read from ``VmHWM``: ``getrusage``'s ``ru_maxrss`` would include the
    parent's size at fork time (Linux carries it over into the child).
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- roles run in fresh interpreters ------------------------------------------------


def role_build(state_url: str, feed_path: Path, traced: bool) -> dict[str, Any]:
    from apexcal.config import config_from_dict
    from apexcal.feeds import build_all_feeds
    from apexcal.state import Store

    config = config_from_dict(config_dict(state_url, feed_path))
    with Store.open(config.state.url) as store:
        store.mirror_seq(ORG)  # the first query opens the database
        rss_before = maxrss_mib()
        if traced:
            tracemalloc.start()
        started = time.perf_counter()
        (first,) = build_all_feeds(config, store, today=TODAY)
        first_s = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if traced else 0
        rss_after = maxrss_mib()
        started = time.perf_counter()
        (again,) = build_all_feeds(config, store, today=TODAY)
        again_s = time.perf_counter() - started
        # A change the feed does not show (an activity far outside its window):
        # the mirror moved, so the feed is rebuilt and compared, and stays as it was.
        outside = store.activities(ORG, ids=[1])[0].model_copy(
            update={"id": 10**9, "start_date": date(1990, 1, 1), "end_date": None}
        )
        store.upsert_activities(ORG, [outside], watermark=None)
        started = time.perf_counter()
        (rebuilt,) = build_all_feeds(config, store, today=TODAY)
        rebuilt_s = time.perf_counter() - started
    return {
        "first_s": first_s,
        "again_s": again_s,
        "rebuilt_s": rebuilt_s,
        "changed": [first.changed, again.changed, rebuilt.changed],
        "rebuilt": [first.rebuilt, again.rebuilt, rebuilt.rebuilt],
        "events": first.count,
        "bytes": first.length,
        "peak_mib": peak / 2**20,
        "maxrss_mib": rss_after,
        "rss_before_mib": rss_before,
    }


def role_baseline(state_url: str, out_path: Path, traced: bool) -> dict[str, Any]:
    from icalendar import Calendar

    from apexcal.config import config_from_dict
    from apexcal.feeds import feed_options, feed_window, in_window
    from apexcal.ical.mapping import map_activity
    from apexcal.ical.timezones import vtimezone
    from apexcal.state import Store

    config = config_from_dict(config_dict(state_url, out_path))
    feed = config.feeds[0]
    options = feed_options(config, feed)
    first, last = feed_window(feed, TODAY)
    with Store.open(config.state.url) as store:
        store.mirror_seq(ORG)
        rss_before = maxrss_mib()
        if traced:
            tracemalloc.start()
        started = time.perf_counter()
        types = store.types(ORG)
        activities = [a for a in store.activities(ORG) if in_window(a, first, last)]
        components = [map_activity(a, types, options) for a in activities]
        components.sort(key=lambda c: str(c["UID"]))
        calendar = Calendar()
        calendar.add("PRODID", "-//bench//baseline//EN")
        calendar.add("VERSION", "2.0")
        calendar.add_component(vtimezone(config.source.timezone))
        for component in components:
            calendar.add_component(component)
        body = calendar.to_ical()
        out_path.write_bytes(body)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if traced else 0
    return {
        "first_s": seconds,
        "events": len(components),
        "bytes": len(body),
        "peak_mib": peak / 2**20,
        "maxrss_mib": maxrss_mib(),
        "rss_before_mib": rss_before,
    }


class _Healthy:
    def snapshot(self) -> Any:
        from apexcal.serve import HealthSnapshot

        now = datetime.now(UTC)
        return HealthSnapshot(
            now=now, stale_after=timedelta(hours=1), started_at=now, feeds={}, targets={}
        )


def files_app(state_url: str, feed_path: Path) -> Any:
    """``apexcal run``'s feed server: the feed file, tokens from the store held for token_cache."""
    from prometheus_client import CollectorRegistry

    from apexcal.log import configure
    from apexcal.serve import create_app
    from apexcal.state import Store

    configure("warning")  # as a daemon would run: no line per request
    store = Store.open(state_url)
    return create_app(
        feeds=lambda: {"team": feed_path},
        tokens=store,
        health=_Healthy(),
        metrics_registry=CollectorRegistry(),
        token_cache=TOKEN_CACHE_S,
    )


def db_app(state_url: str) -> Any:
    """``apexcal serve``'s feed path: the body stored in the database, token and version caches."""
    from apexcal.log import configure
    from apexcal.metrics import Metrics
    from apexcal.serve import create_app
    from apexcal.serve.database import DatabaseFeeds, FeedEntry
    from apexcal.state import Store

    configure("warning")
    store = Store.open(state_url)
    feeds = {DB_ORG: {"team": FeedEntry(per_user=False, max_age=300)}}
    metrics = Metrics()  # as apexcal serve counts: each request in apexcal_feed_requests_total
    return create_app(
        library=DatabaseFeeds(store, lambda: feeds, token_ttl=TOKEN_CACHE_S),
        health=_Healthy(),
        metrics_registry=metrics.registry,
        metrics=metrics,
    )


def role_serve(state_url: str, feed_path: Path, port: int) -> None:
    from apexcal.serve import make_server

    make_server(files_app(state_url, feed_path), host="127.0.0.1", port=port).run()


def role_serve_db(state_url: str, port: int, shared: bool = False, asgi_only: bool = False) -> None:
    from apexcal.serve import make_server
    from apexcal.serve.runner import reuse_port_socket

    app = db_app(state_url)
    if asgi_only:  # every request through the ASGI endpoint: no 304 written by the protocol itself
        app.not_modified = None
    # shared: one of [server] processes' processes, the port bound with SO_REUSEPORT.
    sockets = [reuse_port_socket("127.0.0.1", port)] if shared else None
    make_server(app, host="127.0.0.1", port=port).run(sockets=sockets)


_FLOOR_ETAG = b'"floor"'
_FLOOR_OK = [(b"etag", _FLOOR_ETAG), (b"content-length", b"0")]
_FLOOR_NOT_MODIFIED = [(b"etag", _FLOOR_ETAG)]


async def floor_app(scope: Any, receive: Any, send: Any) -> None:
    """The floor: the smallest ASGI app, a constant answer, no lookup (304 to If-None-Match)."""
    conditional = any(key == b"if-none-match" for key, _ in scope["headers"])
    await send({
        "type": "http.response.start", "status": 304 if conditional else 200,
        "headers": _FLOOR_NOT_MODIFIED if conditional else _FLOOR_OK,
    })
    await send({"type": "http.response.body", "body": b""})


async def floor_rsgi(scope: Any, proto: Any) -> None:
    """The same constant answer as granian's own interface (RSGI) has it."""
    conditional = "if-none-match" in scope.headers
    proto.response_empty(304 if conditional else 200, [("etag", '"floor"')])


def granian_app() -> Any:
    """Granian's factory: the app named by ``APEXCAL_BENCH_GRANIAN`` (JSON: kind, state URL, feed file)."""
    kind, state_url, path = json.loads(os.environ["APEXCAL_BENCH_GRANIAN"])
    return db_app(state_url) if kind == "db" else files_app(state_url, Path(path))


def role_floor(port: int) -> None:
    """The floor under the product's uvicorn set-up (make_server)."""
    from apexcal.serve import make_server

    make_server(floor_app, host="127.0.0.1", port=port).run()


def start_granian(target: str, port: int, interface: str, env: dict[str, str] | None = None) -> Any:
    """Granian serving ``target`` (of this file) on ``port``: one worker, one runtime thread, no access log."""
    return subprocess.Popen(
        [
            sys.executable, "-m", "granian", "--interface", interface,
            *(["--factory"] if target == "feeds:granian_app" else []),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--runtime-threads", "1", "--no-ws", "--log-level", "warning", target,
        ],
        cwd=Path(__file__).parent,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # its worker process too is stopped with it (stop)
    )


# --- the driver -----------------------------------------------------------------------


def run_role(*args: str) -> dict[str, Any]:
    """Run this script in a fresh interpreter in one of its roles; its JSON answer."""
    done = subprocess.run(
        [sys.executable, __file__, "--role", *args], capture_output=True, check=True, text=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, headers: dict[str, str], deadline_s: float = 120) -> httpx.Response:
    """Poll ``url`` until it answers (the server is starting), within a deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return httpx.get(url, headers=headers, timeout=5)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wrk(url: str, seconds: int, connections: int, headers: dict[str, str]) -> dict[str, Any]:
    """Requests per second (and non-2xx/3xx count) of a bounded wrk run against ``url``."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    p99 = re.search(r"^\s+99%\s+(\S+)$", out, re.MULTILINE)
    return {
        "rate": rate,
        "bad": int(bad.group(1)) if bad else 0,
        "p99": p99.group(1) if p99 else "?",
    }


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    gzip_static on;
    types {{ text/calendar ics; }}
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def serve_rows(
    servers: dict[str, tuple[str, dict[str, str]]], seconds: int, connections: int, rounds: int
) -> list[str]:
    """wrk rates of every server (label → URL, headers) for full 200s and 304s, with ratios to nginx.

    All servers run at once and are measured in turn, round after round (the
    order reversed every other round), so that load drifting on a shared
    machine weighs on all alike; each rate is the median of its rounds, each
    ratio the median of the round's rate over nginx's in the same round (with
    their range).
    """
    etags: dict[str, str] = {}
    for label, (url, headers) in servers.items():
        first = wait_for(url, headers)
        if "gzip" in label:
            assert first.headers.get("Content-Encoding") == "gzip", label
        assert first.status_code == 200, (label, first.status_code)
        etags[label] = first.headers["ETag"]
        check = httpx.get(url, headers={**headers, "If-None-Match": etags[label]}, timeout=5)
        assert check.status_code == 304, (label, check.status_code)
    runs = [
        (label, status)
        for status in ("200", "304")
        for label in servers
        if not (status == "200" and label.startswith(ONLY_304))
    ]
    taken: dict[tuple[str, str], list[dict[str, Any]]] = {run: [] for run in runs}
    for round_ in range(rounds):
        for label, status in runs if round_ % 2 == 0 else runs[::-1]:
            url, headers = servers[label]
            if status == "304":
                headers = {**headers, "If-None-Match": etags[label]}
            taken[label, status].append(wrk(url, seconds, connections, headers))
    lines = []
    for label, status in runs:
        # gzip answers beside nginx's precompressed file (gzip_static), the rest beside the plain file.
        baseline = NGINX_GZIP_LABEL if "gzip" in label and status == "200" else NGINX_LABEL
        figures = sorted(taken[label, status], key=lambda f: float(f["rate"]))[len(taken[label, status]) // 2]
        # Each round's rate beside nginx's of the same round (measured next to it, in turn).
        ratios = sorted(
            mine["rate"] / base["rate"]
            for mine, base in zip(taken[label, status], taken[baseline, status], strict=True)
            if base["rate"]
        )
        ratio = f"{statistics.median(ratios):.3f}×" if ratios else "-"
        spread = f"{ratios[0]:.2f}–{ratios[-1]:.2f}" if len(ratios) > 1 else ""
        lines.append(
            f"{label:<46} {status:>5} {figures['rate']:>10,.0f} {figures['p99']:>9} {figures['bad']:>5}"
            f" {ratio:>8} {spread:>10}"
        )
    return lines


NGINX_LABEL = "baseline: nginx static file"
NGINX_GZIP_LABEL = "baseline: nginx gzip_static"
FLOOR_LABEL = "floor: bare ASGI app, uvicorn"
GRANIAN_ASGI_FLOOR = "floor: bare ASGI app, granian"
GRANIAN_RSGI_FLOOR = "floor: bare RSGI app, granian"
ASGI_ONLY = "apexcal serve, database, ASGI path only"
ON_GRANIAN = "apexcal serve, database, on granian (ASGI)"
FILES_ON_GRANIAN = "apexcal feed server, on granian (ASGI)"
BEFORE_FILES = "before: apexcal feed server"
BEFORE_DB = "before: apexcal serve, from the database"
# Rows measured for 304s only: the floors, and the server set-ups compared for revalidations.
ONLY_304 = ("floor:", ASGI_ONLY, ON_GRANIAN, FILES_ON_GRANIAN)
# httpx asks for gzip unless told otherwise; wrk asks for nothing.
IDENTITY = {"Accept-Encoding": "identity"}


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (to its process group when it leads one, as granian does), then SIGKILL after 10 s."""
    group = os.getpgid(proc.pid) == proc.pid if proc.poll() is None else False
    if group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="wrk rounds per figure (median kept)")
    parser.add_argument(
        "--processes", type=int, default=2,
        help="processes of the [server] processes row (SO_REUSEPORT on one port)",
    )
    parser.add_argument(
        "--serve-only",
        action="store_true",
        help="build the feed once, unmeasured, and measure only the serving",
    )
    parser.add_argument(
        "--before-src",
        type=Path,
        help="the src/ directory of another checkout: its feed server and database path served "
        "beside, for a before/after in the same run",
    )
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        role, state_url, path, *rest = args.role
        if role == "serve":
            role_serve(state_url, Path(path), int(rest[0]))
            return
        if role == "serve-db":
            role_serve_db(state_url, int(path), shared=rest == ["shared"])
            return
        if role == "serve-db-asgi":
            role_serve_db(state_url, int(path), asgi_only=True)
            return
        if role == "floor":
            role_floor(int(state_url))
            return
        traced = rest == ["traced"]
        work = role_build if role == "build" else role_baseline
        print(json.dumps(work(state_url, Path(path), traced)))
        return

    from apexcal.apex.models import parse_activity, parse_activity_type
    from apexcal.emulator import EmulatorState
    from apexcal.feeds.tokens import feed_path, hash_token, new_token
    from apexcal.state import Store

    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (Debian: apt-get install -y wrk nginx-light)")
    with tempfile.TemporaryDirectory(prefix="apexcal-bench-feeds-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # nginx's worker runs as an unprivileged user and must read the feed
        state_url = f"sqlite:///{root / 'state.db'}"
        feed_file = root / "feeds" / "team.ics"
        emulator = EmulatorState()
        emulator.seed(ORG, args.count, anchor=TODAY)
        token = new_token()
        with Store.open(state_url) as store:
            store.upsert_activities(
                ORG, [parse_activity(r) for r in emulator.activities(ORG)], watermark=None
            )
            store.upsert_types(ORG, [parse_activity_type(t) for t in emulator.activity_types(ORG)])
            store.add_feed_token("team", hash_token(token), "bench", datetime.now(UTC))

        built = run_role("build", state_url, str(feed_file))
        print(
            f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}"
        )
        if not args.serve_only:
            build_figures(state_url, root, built)
        # The same body as a worker stores it, for the stateless server's path.
        from apexcal.feeds.output import compress
        from apexcal.ical.feed import etag_for

        db_token = new_token()
        body = feed_file.read_bytes()
        with Store.open(state_url) as store:
            stored = store.for_organization(DB_ORG)
            stored.put_feed_body(
                "team", parent="team", body=body, gzip=compress(body), etag=etag_for(body),
                at=datetime.now(UTC),
            )
            stored.add_feed_token("team", hash_token(db_token), "bench", datetime.now(UTC))
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, __file__, "--role", "serve", state_url, str(feed_file), str(port)]
        )
        db_port = free_port()
        db_server = subprocess.Popen(
            [sys.executable, __file__, "--role", "serve-db", state_url, str(db_port)]
        )
        multi_port = free_port()
        multi = [
            subprocess.Popen(
                [sys.executable, __file__, "--role", "serve-db", state_url, str(multi_port), "shared"]
            )
            for _ in range(args.processes)
        ]
        floor_port = free_port()
        others = [
            subprocess.Popen([sys.executable, __file__, "--role", "floor", str(floor_port), "-"])
        ]
        asgi_port = free_port()
        others.append(
            subprocess.Popen(
                [sys.executable, __file__, "--role", "serve-db-asgi", state_url, str(asgi_port)]
            )
        )
        rows: dict[str, tuple[str, dict[str, str]]] = {
            FLOOR_LABEL: (f"http://127.0.0.1:{floor_port}/", {}),
            ASGI_ONLY: (f"http://127.0.0.1:{asgi_port}{feed_path(db_token, 'team')}", IDENTITY),
        }
        if args.before_src is not None:
            before_env = {**os.environ, "PYTHONPATH": str(args.before_src.resolve())}
            before_port, before_db_port = free_port(), free_port()
            others += [
                subprocess.Popen(
                    [sys.executable, __file__, "--role", "serve", state_url, str(feed_file),
                     str(before_port)],
                    env=before_env,
                ),
                subprocess.Popen(
                    [sys.executable, __file__, "--role", "serve-db", state_url, str(before_db_port)],
                    env=before_env,
                ),
            ]
            rows[BEFORE_FILES] = (f"http://127.0.0.1:{before_port}{feed_path(token, 'team')}", IDENTITY)
            rows[BEFORE_DB] = (f"http://127.0.0.1:{before_db_port}{feed_path(db_token, 'team')}", IDENTITY)
        if importlib.util.find_spec("granian") is not None:
            for label, target, interface, kind, path in (
                (GRANIAN_ASGI_FLOOR, "feeds:floor_app", "asginl", "", "/"),
                (GRANIAN_RSGI_FLOOR, "feeds:floor_rsgi", "rsgi", "", "/"),
                (ON_GRANIAN, "feeds:granian_app", "asginl", "db", feed_path(db_token, "team")),
                (FILES_ON_GRANIAN, "feeds:granian_app", "asginl", "files", feed_path(token, "team")),
            ):
                granian_port = free_port()
                setting = json.dumps([kind, state_url, str(feed_file)])
                others.append(
                    start_granian(target, granian_port, interface, {"APEXCAL_BENCH_GRANIAN": setting})
                )
                rows[label] = (f"http://127.0.0.1:{granian_port}{path}", IDENTITY if kind else {})
        else:
            print("granian is not installed: its rows are left out (pip install granian)")
        (feed_file.parent / "team.ics.gz").write_bytes(compress(body))
        nginx_dir = root / "nginx"
        nginx_dir.mkdir()
        nginx_port = free_port()
        conf = nginx_dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=nginx_dir, port=nginx_port, root=feed_file.parent))
        nginx = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(nginx_dir)])
        loads = os.getloadavg()
        try:
            url = f"http://127.0.0.1:{port}{feed_path(token, 'team')}"
            db_url = f"http://127.0.0.1:{db_port}{feed_path(db_token, 'team')}"
            multi_url = f"http://127.0.0.1:{multi_port}{feed_path(db_token, 'team')}"
            lines = serve_rows(
                {
                    NGINX_LABEL: (f"http://127.0.0.1:{nginx_port}/team.ics", IDENTITY),
                    NGINX_GZIP_LABEL: (
                        f"http://127.0.0.1:{nginx_port}/team.ics", {"Accept-Encoding": "gzip"}
                    ),
                    "apexcal feed server": (url, IDENTITY),
                    "apexcal feed server (gzip)": (url, {"Accept-Encoding": "gzip"}),
                    "apexcal serve, from the database": (db_url, IDENTITY),
                    "apexcal serve, from the database (gzip)": (db_url, {"Accept-Encoding": "gzip"}),
                    f"  … {args.processes} processes": (multi_url, IDENTITY),
                    f"  … {args.processes} processes (gzip)": (multi_url, {"Accept-Encoding": "gzip"}),
                    **rows,
                },
                args.seconds,
                args.connections,
                args.rounds,
            )
        finally:
            stop(server)
            stop(db_server)
            for proc in others:
                stop(proc)
            for proc in multi:
                stop(proc)
            stop(nginx)
        print(
            f"\nserving it: wrk -t1 -c{args.connections} -d{args.seconds}s over loopback, "
            f"all servers up, median of {args.rounds} round(s); load average "
            f"{loads[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n"
        )
        print(
            f"{'server':<46} {'status':>5} {'requests/s':>10} {'p99':>9} {'bad':>5}"
            f" {'÷ nginx':>8} {'range':>10}"
        )
        print("\n".join(lines))


def build_figures(state_url: str, root: Path, built: dict[str, Any]) -> None:
    """The build figures: a traced build, the in-memory baseline (plain and traced), printed."""
    # Its own file: a build over the first one's would be skipped as unchanged.
    traced = run_role("build", state_url, str(root / "traced" / "team.ics"), "traced")
    base = run_role("baseline", state_url, str(root / "baseline.ics"))
    base_traced = run_role("baseline", state_url, str(root / "baseline.ics"), "traced")
    print(f"\nbuild of a feed of {built['events']:,} events ({built['bytes'] / 2**20:.1f} MiB)\n")
    rows = [
        ("build_all_feeds, first build", f"{built['first_s']:.2f}", traced, built),
        ("  again, nothing changed (skipped)", f"{built['again_s']:.3f}", None, None),
        ("  again, change outside the feed", f"{built['rebuilt_s']:.2f}", None, None),
        ("baseline: one icalendar Calendar", f"{base['first_s']:.2f}", base_traced, base),
    ]
    print(f"{'way':<36} {'seconds':>8} {'py peak MiB':>12} {'RSS MiB':>8} {'RSS before':>11}")
    for name, seconds, peak, rss in rows:
        peak_text = f"{peak['peak_mib']:.1f}" if peak else "-"
        rss_text = f"{rss['maxrss_mib']:.0f}" if rss else "-"
        before = f"{rss['rss_before_mib']:.0f}" if rss else "-"
        print(f"{name:<36} {seconds:>8} {peak_text:>12} {rss_text:>8} {before:>11}")
    assert built["changed"] == [True, False, False], built
    assert built["rebuilt"] == [True, False, True], built


if __name__ == "__main__":
    main()
