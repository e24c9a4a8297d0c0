"""Benchmark: ``apexcal export`` of N activities from the emulator, time and peak memory.

For each size (default 10,000 and 100,000) an emulator is started as a
separate process (``apexcal emulator``, seeded, ``$limit`` capped at 1,000),
then, each as a fresh process whose peak RSS is read from ``wait4``:

* ``apexcal export --config … -o FILE`` — the real command: pages streamed,
  components spooled to disk and merged in UID order, the file written
  atomically;
* baseline — the in-memory way with the same client and mapping: every
  activity listed into a list, mapped, added to one icalendar ``Calendar``
  (sorted by UID) and serialized whole.

Flat memory means the export's peak RSS does not grow with N while the
baseline's does.  ``--before BIN`` also runs another installation's
``apexcal export`` (e.g. the virtualenv of an older checkout) against the same
emulator right after ours, prints its rate beside ours and says whether the
two files are byte-identical.  Everything runs on loopback.

Run: ``.venv/bin/python bench/export.py [--counts 10000 100000] [--no-baseline] [--before OTHER/.venv/bin]``
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


def measured(command: list[str]) -> tuple[float, float]:
    """Run ``command``; its wall time in seconds and its peak RSS in MiB."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APEXCAL_")}
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{command[:3]} failed with exit code {proc.returncode}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--before", type=Path, help="bin directory of another installation whose export runs too"
    )
    args = parser.parse_args()
    rows: list[str] = []
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
                out = root / f"export-{count}.ics"
                seconds, rss = measured(
                    [APEXCAL, "export", "--config", str(config), "-o", str(out)]
                )
                events = out.read_bytes().count(b"BEGIN:VEVENT")
                size = out.stat().st_size / 2**20
                rows.append(
                    f"{'apexcal export':<30} {count:>8,} {events:>8,} {size:>8.1f} {seconds:>8.1f} "
                    f"{events / seconds:>8,.0f} {rss:>8.0f}"
                )
                print(rows[-1], flush=True)
                if args.before is not None:
                    ours = events / seconds
                    old_out = root / f"before-{count}.ics"
                    seconds, rss = measured(
                        [str(args.before / "apexcal"), "export", "--config", str(config), "-o", str(old_out)]
                    )
                    events = old_out.read_bytes().count(b"BEGIN:VEVENT")
                    same = old_out.read_bytes() == out.read_bytes()
                    rows.append(
                        f"{'before: apexcal export':<30} {count:>8,} {events:>8,} "
                        f"{old_out.stat().st_size / 2**20:>8.1f} {seconds:>8.1f} {events / seconds:>8,.0f} "
                        f"{rss:>8.0f}   ours ÷ before {ours / (events / seconds):.2f}×, "
                        f"{'same bytes' if same else 'different bytes'}"
                    )
                    print(rows[-1], flush=True)
                    old_out.unlink()
                if not args.no_baseline:
                    base_out = root / f"baseline-{count}.ics"
                    seconds, rss = measured(
                        [sys.executable, "-c", BASELINE, str(config), str(base_out), TOKEN]
                    )
                    events = base_out.read_bytes().count(b"BEGIN:VEVENT")
                    size = base_out.stat().st_size / 2**20
                    rows.append(
                        f"{'baseline: in-memory Calendar':<30} {count:>8,} {events:>8,} {size:>8.1f} "
                        f"{seconds:>8.1f} {events / seconds:>8,.0f} {rss:>8.0f}"
                    )
                    print(rows[-1], flush=True)
                    base_out.unlink()
                out.unlink()
            finally:
                emulator.terminate()
                emulator.wait(timeout=30)
    print(
        f"\nmachine: {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}\n"
    )
    print(
        f"{'way':<30} {'records':>8} {'events':>8} {'MiB':>8} {'seconds':>8} {'ev/s':>8} {'RSS MiB':>8}"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
