"""Benchmark: ``apexcal export`` of N activities and a feed build of N events, time and memory.

Export.  For each size (default 10,000 and 100,000) an emulator is started
as a separate process (``apexcal emulator``, seeded, ``$limit`` capped at
1,000), then, each as a fresh process:

* ``apexcal export --config … -o FILE`` — the real command: pages streamed,
  mapped and serialized on every core, spooled to disk and merged in UID
  order, the file written atomically;
* baseline — the in-memory way with the same client and mapping: every
  activity listed into a list, mapped, added to one icalendar ``Calendar``
  (sorted by UID) and serialized whole.

Feed build.  A SQLite state store is seeded with N activities inside the
feed's window and ``build_all_feeds`` builds one public feed in a fresh
process; its seconds are those of the build call (imports excluded).

``--before BIN`` runs another installation (e.g. the virtualenv of an older
checkout) the same way right after ours, against the same emulator and
store, prints the ratio of the rates and says whether the files are
byte-identical; ``--rounds N`` alternates the two N times and keeps each
one's best.  Every process tree (workers and fork server included) is
sampled from /proc for its CPU time and memory.  Everything runs on loopback.

Run: ``.venv/bin/python bench/export.py [--counts 10000 100000] [--feed-events 10000] [--rounds N]
[--no-baseline] [--before OTHER/.venv/bin]``
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APEXCAL = str(Path(sys.executable).with_name("apexcal"))
ORG = 27
TOKEN = "demo-token-john-46"  # the emulator's published demo token
PAGE = 1000

BASELINE = """
import sys
from icalendar import Calendar
from apexcal.apex.client import ApexClient
from apexcal.cli.export_cmd import _options
from apexcal.config import load_config
from apexcal.export import types_by_key
from apexcal.ical.mapping import map_activity
from apexcal.ical.timezones import vtimezone

config = load_config(sys.argv[1])
options = _options(config, config.source.base_url, "public", "events")
with ApexClient(config.source.base_url, sys.argv[3], config.source.organization_id, page_size=config.source.page_size) as client:
    types = types_by_key(client.list_activity_types())
    activities = list(client.list_activities())
components = []
for activity in activities:
    if activity.start_date is not None:
        components.append(map_activity(activity, types, options))
components.sort(key=lambda c: str(c["UID"]))
calendar = Calendar()
calendar.add("PRODID", "-//bench//baseline//EN")
calendar.add("VERSION", "2.0")
calendar.add_component(vtimezone(config.source.timezone))
for component in components:
    calendar.add_component(component)
with open(sys.argv[2], "wb") as out:
    out.write(calendar.to_ical())
"""


def start_emulator(count: int) -> tuple[subprocess.Popen[str], str]:
    """An emulator process seeded with ``count`` activities, and its base URL."""
    proc = subprocess.Popen(
        [
            APEXCAL,
            "emulator",
            "--port",
            "0",
            "--seed-org",
            str(ORG),
            "--seed-count",
            str(count),
            "--paginate-max",
            str(PAGE),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the emulator says it listens
    match = re.search(r"listening on (http://\S+)", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"the emulator did not start: {line!r}")
    return proc, match.group(1)


class Tree:
    """CPU seconds and memory of a process and every process it starts, sampled from /proc.

    The workers of a pool (and the fork server they come from) are not
    waited for by the command itself, so ``wait4`` alone would not count
    them: the tree is found by parent pid, re-scanned every quarter second,
    and each known process read every 20 ms.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.cpu: dict[int, float] = {}
        self.rss: dict[int, float] = {}
        self.peak_sum = 0.0
        self.own_cpu = 0.0
        self.own_hwm = 0.0
        self.peak_pss = 0.0
        self.next_pss = 0.0
        self.tick = os.sysconf("SC_CLK_TCK")
        self.page = os.sysconf("SC_PAGE_SIZE") / 2**20

    def scan(self) -> None:
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = self._stat(int(entry))
                if stat is not None:
                    parents[int(entry)] = int(stat[1])
        known = set(self.cpu) | {self.root}
        grew = True
        while grew:
            grew = False
            for pid, ppid in parents.items():
                if ppid in known and pid not in known:
                    known.add(pid)
                    grew = True
        for pid in known:
            self.cpu.setdefault(pid, 0.0)

    @staticmethod
    def _stat(pid: int) -> list[str] | None:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                text = f.read()
        except OSError:
            return None
        return text[text.rindex(")") + 2 :].split()  # from the state field on

    def sample(self) -> None:
        total = 0.0
        for pid in list(self.cpu):
            stat = self._stat(pid)
            if stat is None:
                continue
            self.cpu[pid] = (int(stat[11]) + int(stat[12])) / self.tick
            rss = int(stat[21]) * self.page
            self.rss[pid] = max(self.rss.get(pid, 0.0), rss)
            total += rss
        self.peak_sum = max(self.peak_sum, total)
        if time.perf_counter() >= self.next_pss:  # costlier to read: five times a second
            self.next_pss = time.perf_counter() + 0.2
            pss = 0.0
            for pid in list(self.cpu):
                try:
                    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
                        for line in f:
                            if line.startswith("Pss:"):
                                pss += int(line.split()[1]) / 1024
                except OSError:
                    continue
            self.peak_pss = max(self.peak_pss, pss)
        try:
            with open(f"/proc/{self.root}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        self.own_hwm = max(self.own_hwm, int(line.split()[1]) / 1024)
        except OSError:
            pass
        self.own_cpu = self.cpu.get(self.root, self.own_cpu)


def measured(command: list[str]) -> tuple[float, float, Tree, str]:
    """Run ``command``; its wall time, own peak RSS in MiB, process tree's figures and output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APEXCAL_")}
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    tree = Tree(proc.pid)
    rescan = 0.0
    while True:
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() >= rescan:
            tree.scan()
            rescan = time.perf_counter() + 0.25
        tree.sample()
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    # wait4 counts the children the command waited for (forked workers) as its own: the
    # command's figures are its last samples instead (its peak RSS from VmHWM).
    tree.cpu[proc.pid] = max(tree.cpu.get(proc.pid, 0.0), tree.own_cpu)
    tree.rss[proc.pid] = max(tree.rss.get(proc.pid, 0.0), tree.own_hwm)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{command[:3]} failed with exit code {proc.returncode}")
    assert proc.stdout is not None
    return seconds, tree.rss[proc.pid], tree, proc.stdout.read()


def row(way: str, count: int, events: int, size: float, seconds: float, rss: float, tree: Tree) -> str:
    """One line of the table."""
    return (
        f"{way:<30} {count:>8,} {events:>8,} {size:>6.1f} {seconds:>8.2f} {events / seconds:>8,.0f} "
        f"{rss:>6.0f} {max(tree.rss.values()):>6.0f} {tree.peak_sum:>6.0f} {tree.peak_pss:>6.0f} "
        f"{sum(tree.cpu.values()):>6.1f} "
        f"{len(tree.cpu):>3}"
    )


HEADER = (
    f"{'way':<30} {'records':>8} {'events':>8} {'MiB':>6} {'seconds':>8} {'ev/s':>8} "
    f"{'RSS':>6} {'maxRSS':>6} {'sumRSS':>6} {'sumPSS':>6} {'CPU s':>6} {'ps':>3}"
)
LEGEND = (
    "RSS: the command's own peak; maxRSS: the largest peak of any process of its tree\n"
    "(workers, fork server); sumRSS: the peak of the tree's summed RSS (sampled every 20 ms;\n"
    "pages shared by forked workers count once per process); sumPSS: the peak of the tree's\n"
    "proportional set size (shared pages split between their sharers; sampled every 200 ms);\n"
    "CPU s: the tree's CPU time; ps: processes.  Memory in MiB."
)

FEED_BUILD = """
import sys, time
from datetime import date
from pathlib import Path
from apexcal.config import config_from_dict
from apexcal.feeds import build_all_feeds
from apexcal.state import Store

config = config_from_dict({
    "source": {"base_url": "https://api.achieveapex.com", "token": "unused", "organization_id": @ORG@,
               "timezone": "Europe/Berlin"},
    "state": {"url": sys.argv[1]},
    "mapping": {"geocoder": "none"},
    "feeds": [{"name": "team", "path": sys.argv[2], "window": {"past_days": 3660, "future_days": 3660},
               "calendar_name": "Team", "color": "#3B82F6"}],
})
with Store.open(config.state.url) as store:
    store.mirror_seq(@ORG@)
    started = time.perf_counter()
    (result,) = build_all_feeds(config, store, today=date(2026, 6, 15))
    print(time.perf_counter() - started, result.count)
""".replace("@ORG@", str(ORG))


SEED = """
import sys
from datetime import date

from apexcal.apex.models import parse_activity, parse_activity_type
from apexcal.emulator import EmulatorState
from apexcal.state import Store

url, org, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
emulator = EmulatorState()
emulator.seed(org, count, anchor=date(2026, 6, 15))
with Store.open(url) as store:
    store.upsert_activities(org, [parse_activity(r) for r in emulator.activities(org)], watermark=None)
    store.upsert_types(org, [parse_activity_type(t) for t in emulator.activity_types(org)])
"""


def seed_store(root: Path, count: int, bin_dir: Path | None = None) -> str:
    """A SQLite state store holding ``count`` seeded activities, all inside the feed's window.

    With ``bin_dir`` the store is made by that installation (its own schema and
    migrations), so an older release builds its feed from a store it can open.
    """
    tag = "" if bin_dir is None else "-other"
    url = f"sqlite:///{root / f'state-{count}{tag}.db'}"
    python = sys.executable if bin_dir is None else str(bin_dir / "python")
    subprocess.run([python, "-c", SEED, url, str(ORG), str(count)], check=True, capture_output=True)
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--feed-events", type=int, nargs="*", default=[10_000])
    parser.add_argument("--rounds", type=int, default=1, help="runs of each way, alternating (best kept)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--before", type=Path, help="bin directory of another installation whose export runs too"
    )
    args = parser.parse_args()
    rows: list[str] = []
    ways: list[tuple[str, Path]] = [("apexcal export", Path(APEXCAL).parent)]
    if args.before is not None:
        ways.append(("before: apexcal export", args.before))
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="apexcal-bench-export-") as tmp:
        root = Path(tmp)
        for count in args.counts:
            emulator, base_url = start_emulator(count)
            try:
                config = root / f"export-{count}.toml"
                config.write_text(
                    f'[source]\nbase_url = "{base_url}"\ntoken = "{TOKEN}"\n'
                    f'organization_id = {ORG}\ntimezone = "Europe/Berlin"\npage_size = {PAGE}\n'
                )
                best: dict[str, tuple[float, float, Tree]] = {}
                bodies: dict[str, bytes] = {}
                for _ in range(args.rounds):
                    for way, bin_dir in ways:
                        out = root / "export.ics"
                        figures = measured(
                            [str(bin_dir / "apexcal"), "export", "--config", str(config), "-o", str(out)]
                        )
                        if way not in best or figures[0] < best[way][0]:
                            best[way] = figures[:3]
                        bodies[way] = out.read_bytes()
                        out.unlink()
                for way, _ in ways:
                    body = bodies[way]
                    events = body.count(b"BEGIN:VEVENT")
                    rows.append(row(way, count, events, len(body) / 2**20, *best[way]))
                    print(rows[-1], flush=True)
                if args.before is not None:
                    ours, before = best[ways[0][0]][0], best[ways[1][0]][0]
                    same = bodies[ways[0][0]] == bodies[ways[1][0]]
                    rows.append(
                        f"{'':<30} ours ÷ before: {before / ours:.2f}× events/s, "
                        f"{'same bytes' if same else 'DIFFERENT BYTES'}"
                    )
                    print(rows[-1], flush=True)
                if not args.no_baseline:
                    base_out = root / f"baseline-{count}.ics"
                    seconds, rss, tree, _ = measured(
                        [sys.executable, "-c", BASELINE, str(config), str(base_out), TOKEN]
                    )
                    body = base_out.read_bytes()
                    events = body.count(b"BEGIN:VEVENT")
                    rows.append(
                        row("baseline: in-memory Calendar", count, events, len(body) / 2**20, seconds, rss, tree)
                    )
                    print(rows[-1], flush=True)
                    base_out.unlink()
            finally:
                emulator.terminate()
                emulator.wait(timeout=30)
        for count in args.feed_events:
            # Each installation builds from a store of its own schema, seeded alike.
            state_urls = {
                way: seed_store(root, count, None if i == 0 else bin_dir)
                for i, (way, bin_dir) in enumerate(ways)
            }
            timed: dict[str, float] = {}
            bodies = {}
            best = {}
            for _ in range(args.rounds):
                for way, bin_dir in ways:
                    feed = root / "feeds" / f"{way.split(':')[0]}-{count}.ics"
                    feed.unlink(missing_ok=True)
                    figures = measured([str(bin_dir / "python"), "-c", FEED_BUILD, state_urls[way], str(feed)])
                    build_s = float(figures[3].strip().splitlines()[-1].split()[0])
                    if way not in timed or build_s < timed[way]:
                        timed[way] = build_s
                        best[way] = figures[:3]
                    bodies[way] = feed.read_bytes()
            for way, _ in ways:
                label = "feed build" + (" (before)" if way.startswith("before") else "")
                body = bodies[way]
                events = body.count(b"BEGIN:VEVENT")
                _, rss, tree = best[way]
                rows.append(row(label, count, events, len(body) / 2**20, timed[way], rss, tree))
                print(rows[-1], flush=True)
            if args.before is not None:
                ours, before = timed[ways[0][0]], timed[ways[1][0]]
                same = bodies[ways[0][0]] == bodies[ways[1][0]]
                rows.append(
                    f"{'':<30} ours ÷ before: {before / ours:.2f}× events/s, "
                    f"{'same bytes' if same else 'DIFFERENT BYTES'}"
                )
                print(rows[-1], flush=True)
    print(
        f"\nmachine: {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} "
        f"(at the start: {START_LOAD:.1f})\n"
    )
    print(HEADER)
    print("\n".join(rows))
    print(LEGEND)


START_LOAD = os.getloadavg()[0]

if __name__ == "__main__":
    main()
