"""Benchmark: the emulator's find over 100,000 activities with filters, a sort and a small page.

Seeds one organization in memory and times ``EmulatorState.find_activities``
(the work behind ``GET /activities``, without HTTP) for a few realistic
queries, each beside two figures from the same run:

* **full order** — the same filter followed by ordering every match
  (``order(matches)[skip:skip+limit]``), i.e. what a find costs without the
  heap that picks a small page;
* **sorted baseline** — a plain Python ``sorted`` of the same 100,000 records
  by ``updated_at`` (a text key, never null): the floor of any find that
  sorts every record.

Figures are medians of ``--repeat`` runs, in milliseconds.

Run: ``.venv/bin/python bench/emulator.py [--count 100000] [--repeat 15]``
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from apexcal.emulator import DEMO_ORG_ID, EmulatorState
from apexcal.emulator.query import compile_find, order
from apexcal.emulator.records import ACTIVITY_SCHEMA

QUERIES: dict[str, dict[str, Any]] = {
    "open since 2020, by start_date then -updated_at, 10": {
        "done": "false",
        "start_date": {"$gte": "2020-01-01"},
        "$sort": {"start_date": "1", "updated_at": "-1"},
        "$limit": "10",
    },
    "calls and meetings, by -start_time, 25": {
        "activity_type": {"$in": ["call", "meeting"]},
        "$sort": {"start_time": "-1"},
        "$limit": "25",
    },
    "subject ~ 'call', by subject, skip 20, 20": {
        "subject": "call",
        "$sort": {"subject": "1"},
        "$limit": "20",
        "$skip": "20",
    },
}


def median_ms(run: Callable[[], object], repeat: int) -> float:
    """The median wall time of ``run`` in milliseconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    """Seed, run every query, print one table row per query."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    state = EmulatorState()
    state.seed(DEMO_ORG_ID, args.count)
    records = state.activities(DEMO_ORG_ID)
    print(f"{args.count:,} activities; Python {platform.python_version()}; median of {args.repeat} runs")
    print(f"{'query':52} {'matches':>8} {'find ms':>8} {'full order ms':>14} {'sorted() ms':>12}")
    for name, spec in QUERIES.items():
        find = compile_find(
            ACTIVITY_SCHEMA,
            {"organization_id": str(DEMO_ORG_ID), **spec},
            paginate_default=10,
            paginate_max=100,
        )
        total, page = state.find_activities(find)
        end = find.skip + find.limit

        def full_order(find: Any = find, end: int = end) -> list[Any]:
            return order(find.select_rows(records), find.sort)[find.skip : end]

        assert [r["id"] for r in full_order()] == [r["id"] for r in page]
        found = median_ms(lambda find=find: state.find_activities(find), args.repeat)
        full = median_ms(full_order, args.repeat)
        floor = median_ms(lambda: sorted(records, key=itemgetter("updated_at")), args.repeat)
        print(f"{name:52} {total:>8,} {found:>8.1f} {full:>14.1f} {floor:>12.1f}")


if __name__ == "__main__":
    main()
