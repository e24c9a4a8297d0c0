"""Benchmark: a full pull of N activities from the emulator, against a raw-HTTP baseline.

Starts the emulator in this process (uvicorn in a thread, ``$limit`` capped at
100), seeds it, and times reading every activity:

* ``changes_since(None)`` — the change feed, keyset-paged on ``(updated_at, id)``;
* ``list_activities()`` — the plain listing, ``$skip``-paged;
* two baselines: plain ``httpx`` GETs of exactly the URLs each of the two
  requested, with JSON decoding but no validation into models.

Each is run ``--repeat`` times, interleaved, for speed (the best run counts) and once more
under ``tracemalloc`` for the peak of Python memory allocated during the pass.
The server shares the process (and the GIL), so its work is in every figure,
baseline included.

Run: ``.venv/bin/python bench/pull.py [--count 10000] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import gc
import platform
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import httpx

from apexcal import log
from apexcal.apex.client import ApexClient
from apexcal.emulator import DEMO_ORG_ID, EmulatorState, create_app, serve_in_thread
from apexcal.emulator.state import DEMO_TOKEN


@dataclass(frozen=True, kw_only=True)
class Result:
    """The figures of one way of pulling."""

    name: str
    records: int
    requests: int
    seconds: float
    peak_bytes: int

    def line(self) -> str:
        """One table row."""
        rate = self.records / self.seconds if self.seconds else float("inf")
        return (
            f"{self.name:<28} {self.records:>8} {self.requests:>9} {self.seconds:>8.3f} "
            f"{rate:>12,.0f} {self.peak_bytes / 2**20:>10.1f}"
        )


class RecordingTransport(httpx.HTTPTransport):
    """An HTTP transport that remembers the URL of every request (for the baseline)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        return super().handle_request(request)


def measure(ways: dict[str, Callable[[], tuple[int, int]]], repeat: int) -> list[Result]:
    """Time every way (best of ``repeat``, interleaved so drift hits all alike), then trace peaks."""
    best = dict.fromkeys(ways, float("inf"))
    counts: dict[str, tuple[int, int]] = {}
    for _ in range(repeat):
        for name, run in ways.items():
            gc.collect()
            started = time.perf_counter()
            counts[name] = run()
            best[name] = min(best[name], time.perf_counter() - started)
    results = []
    for name, run in ways.items():
        gc.collect()
        tracemalloc.start()
        try:
            run()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        records, requests = counts[name]
        results.append(
            Result(
                name=name, records=records, requests=requests, seconds=best[name], peak_bytes=peak
            )
        )
    return results


def main() -> None:
    """Seed, serve, pull three ways, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="activities to seed")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per way (best counts)")
    args = parser.parse_args()
    log.configure("warning")

    state = EmulatorState()
    state.seed(DEMO_ORG_ID, args.count)
    with serve_in_thread(create_app(state, paginate_max=100)) as base_url:
        recorder = RecordingTransport()
        counted: list[int] = [0]

        def count(_route: str, _status: int) -> None:
            counted[0] += 1

        client = ApexClient(
            base_url, DEMO_TOKEN, DEMO_ORG_ID, page_size=100, transport=recorder, on_request=count
        )
        raw = httpx.Client(headers={"Authorization": f"Bearer {DEMO_TOKEN}"}, timeout=30)

        def feed() -> tuple[int, int]:
            counted[0] = 0
            recorder.urls.clear()
            n = sum(1 for _ in client.changes_since(None, overlap=timedelta(0)))
            return n, counted[0]

        def listing() -> tuple[int, int]:
            counted[0] = 0
            recorder.urls.clear()
            n = sum(1 for _ in client.list_activities())
            return n, counted[0]

        def replay(urls: list[str]) -> Callable[[], tuple[int, int]]:
            def run() -> tuple[int, int]:
                n = 0
                for url in urls:
                    response = raw.get(url)
                    response.raise_for_status()
                    n += len(response.json()["data"])
                return n, len(urls)

            return run

        feed()
        feed_urls = list(recorder.urls)
        listing()
        list_urls = list(recorder.urls)

        results = measure(
            {
                "change feed (keyset)": feed,
                "baseline: same feed URLs": replay(feed_urls),
                "list ($skip)": listing,
                "baseline: same list URLs": replay(list_urls),
            },
            args.repeat,
        )
        client.close()
        raw.close()

    print(f"pull of {args.count} activities, page 100, Python {platform.python_version()}")
    print(
        f"{'way':<28} {'records':>8} {'requests':>9} {'seconds':>8} {'activities/s':>12} {'peak MiB':>10}"
    )
    for result in results:
        print(result.line())
    feed_r, feed_base, list_r, list_base = results
    print(
        f"client time / baseline time: change feed {feed_r.seconds / feed_base.seconds:.2f}x, "
        f"list {list_r.seconds / list_base.seconds:.2f}x"
    )


if __name__ == "__main__":
    main()
