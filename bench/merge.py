"""Benchmark: what merging updates into the calendar's copy costs, beside replacing them, in the same run.

For each server (Radicale, Xandikos, started like the test fixtures, on
loopback; the emulator serves the API in this process): ``--count``
activities are synced into a fresh calendar, then rounds of ``--changed``
activities changed in the CRM are synced by one cycle each — alternately the
engine as it is (an update merges our rendering into the server's copy: the
copies not read this cycle are read with one calendar-multiget, then merged)
and a baseline cycle with the merge step switched off (the update PUTs the
bare rendering, as before merging existed), in the order merge, replace,
replace, merge, so load drifting on a shared machine weighs on both alike.
Printed per cycle: seconds, CalDAV requests, objects updated.

Run: ``.venv/bin/python bench/merge.py [--servers radicale,xandikos] [--count 1000] [--changed 200]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.caldav_servers import radicale_handle, xandikos_handle  # noqa: E402

from apexcal import __version__, log  # noqa: E402  (after the path set-up)
from apexcal.apex.client import ApexClient  # noqa: E402
from apexcal.config import Config, config_from_dict  # noqa: E402
from apexcal.emulator import DEMO_ORG_ID, EmulatorState, create_app, serve_in_thread  # noqa: E402
from apexcal.emulator.state import DEMO_TOKEN  # noqa: E402
from apexcal.state import Store  # noqa: E402
from apexcal.sync.cycle import Cycle  # noqa: E402
from apexcal.sync.plan import Plan  # noqa: E402
from apexcal.sync.run import run_target_cycle  # noqa: E402
from apexcal.sync.summary import CycleSummary  # noqa: E402

ANCHOR = date(2026, 11, 1)
MAKERS = {"radicale": radicale_handle, "xandikos": xandikos_handle}
MERGED = Cycle.merged


def _replace(self: Cycle, the_plan: Plan) -> Plan:
    """The baseline: updates keep the bare rendering (no read of the copy, no merge)."""
    return the_plan


def _config(api: str, url: str, username: str | None, password: str | None, state: Path) -> Config:
    target: dict[str, object] = {"name": "bench", "url": url}
    if username:
        target.update(username=username, password=password)
    return config_from_dict(
        {
            "source": {"base_url": api, "token": DEMO_TOKEN, "organization_id": DEMO_ORG_ID, "timeout": "300s"},
            "state": {"url": f"sqlite:///{state}"},
            "sync": {"concurrency": 4, "reconcile_interval": "1h"},
            "mapping": {"geocoder": "none"},
            "targets": [target],
        }
    )


def _cycle(config: Config, store: Store, api: str) -> CycleSummary:
    with ApexClient(api, DEMO_TOKEN, DEMO_ORG_ID) as client:
        return run_target_cycle(config, config.targets[0], store, client=client)


def run(kind: str, count: int, changed: int) -> None:
    """One server: initial sync, then merge/replace rounds of ``changed`` CRM changes."""
    with tempfile.TemporaryDirectory() as tmp:
        handle = MAKERS[kind](Path(tmp) / kind)
        handle.start()
        try:
            state = EmulatorState()
            state.seed(DEMO_ORG_ID, count, seed=3, anchor=ANCHOR)
            ids = sorted(a["id"] for a in state.activities(DEMO_ORG_ID))
            with serve_in_thread(create_app(state)) as api:
                url = handle.make_calendar("merge")
                config = _config(api, url, handle.username, handle.password, Path(tmp) / "state.db")
                with Store.open(config.state.url) as store:
                    first = _cycle(config, store, api)
                    print(f"  initial sync: {first.created} objects in {first.seconds:.1f} s")
                    for round_no, mode in enumerate(("merge", "replace", "replace", "merge")):
                        for activity_id in ids[round_no * changed % len(ids):][:changed]:
                            state.patch_activity(activity_id, {"subject": f"Round {round_no} {activity_id}"})
                        Cycle.merged = MERGED if mode == "merge" else _replace  # type: ignore[method-assign]
                        try:
                            summary = _cycle(config, store, api)
                        finally:
                            Cycle.merged = MERGED  # type: ignore[method-assign]
                        print(
                            f"  {mode:7} cycle: {summary.updated} updated in {summary.seconds:.2f} s, "
                            f"{summary.caldav_requests} CalDAV requests"
                        )
        finally:
            handle.stop()


def main() -> None:
    """Run the benchmark on each server and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="radicale,xandikos")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--changed", type=int, default=200)
    args = parser.parse_args()
    log.configure("warning")
    print(
        f"apexcal {__version__}, Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for kind in args.servers.split(","):
        print(f"{kind}:")
        run(kind, args.count, args.changed)


if __name__ == "__main__":
    main()
