"""``apexcal run`` under trouble: an API outage over several intervals, SIGTERM in the middle of a cycle."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apexcal.emulator import EmulatorState, create_app, serve_in_thread
from apexcal.emulator.state import DEMO_TOKEN
from apexcal.state import Store
from tests.fixtures.caldav_servers import CalDAVServerHandle
from tests.integration.test_daemon_support import (
    DaemonProcess,
    NotifySocket,
    calendar_hrefs,
    daemon_process,
    eventually,
    free_port,
    write_config,
)

SHUTDOWN_BOUND_S = 8.0  # write_config's sync.shutdown_timeout


@pytest.fixture
def api() -> Iterator[tuple[EmulatorState, str]]:
    """An emulator of its own (faults injected here touch no other test)."""
    state = EmulatorState()
    with serve_in_thread(create_app(state)) as url:
        yield state, url


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    """A daemon process handle (not started) whose config goes to ``tmp_path/apexcal.toml``."""
    with daemon_process(config=tmp_path / "apexcal.toml", root=tmp_path, notify=NotifySocket(),
                        log_level="info") as process:
        yield process


def target(server: CalDAVServerHandle, **extra: object) -> dict[str, object]:
    return {"name": "alice", "url": server.make_calendar("faults"), "username": "alice",
            "password": server.users["alice"], **extra}


def health(base: str) -> int:
    return httpx.get(f"{base}/healthz", timeout=5).status_code


class TestApiOutage:
    def test_outage_keeps_running_turns_health_503_and_recovers(
        self, api: tuple[EmulatorState, str], daemon: DaemonProcess,
        radicale_server: CalDAVServerHandle,
    ) -> None:
        """The API answering 503 for several intervals: alive, backing off, 503 health; then 200."""
        radicale_server.start()
        state, url = api
        state.seed(27, 10, seed=4)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        write_config(daemon.config, root=daemon.root, api_url=url, token=DEMO_TOKEN,
                     targets=[target(radicale_server, user=46)], port=port, interval="1s",
                     stale_after="3s", extra_sync='backoff_max = "2s"')
        daemon.start()
        daemon.wait_event("sync.cycle", target="alice")
        eventually(lambda: health(base) == 200, 10, "healthy at first")

        httpx.post(f"{url}/__admin/faults", json={"kind": "status", "status": 503, "count": 100_000},
                   timeout=5).raise_for_status()
        daemon.wait_event("target.backoff", target="alice")
        eventually(lambda: health(base) == 503, 20, "/healthz 503 once the target is stale")
        assert 'apexcal_job_consecutive_failures{job="target:alice"} 0.0' not in httpx.get(
            f"{base}/metrics", timeout=5).text
        eventually(lambda: len(daemon.events("sync.cycle_failed", target="alice")) >= 3, 30,
                   "failed cycles over several intervals")
        assert daemon.alive

        httpx.delete(f"{url}/__admin/faults", timeout=5).raise_for_status()
        recovered = daemon.wait_event("target.recovered", 20, target="alice")
        assert recovered["failures"] >= 3
        eventually(lambda: health(base) == 200, 10, "/healthz 200 after recovery")
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert 'apexcal_errors_total{kind="ServerError",target="alice"}' in metrics
        assert 'apexcal_api_requests_total{method="GET /activities",status="503"}' in metrics
        assert 'apexcal_job_consecutive_failures{job="target:alice"} 0.0' in metrics


class TestStopMidCycle:
    def test_sigterm_mid_cycle_exits_zero_in_bound_and_next_start_converges(
        self, api: tuple[EmulatorState, str], daemon: DaemonProcess,
        radicale_server: CalDAVServerHandle,
    ) -> None:
        """SIGTERM during a long first cycle: exit 0 within the bound; a restart converges exactly."""
        radicale_server.start()
        state, url = api
        state.seed(27, 120, seed=6)
        tgt = target(radicale_server)
        auth = ("alice", radicale_server.users["alice"])
        port = free_port()
        write_config(daemon.config, root=daemon.root, api_url=url, token=DEMO_TOKEN,
                     targets=[tgt], port=port, interval="2s")
        daemon.start()
        eventually(lambda: len(calendar_hrefs(str(tgt["url"]), auth)) >= 5, 30,
                   "the first objects of the initial sync")
        assert not daemon.events("sync.cycle"), "the cycle ended before the signal"
        daemon.send(signal.SIGTERM)
        sent = time.monotonic()
        assert daemon.wait_exit(timeout=SHUTDOWN_BOUND_S + 5) == 0
        assert time.monotonic() - sent < SHUTDOWN_BOUND_S
        assert daemon.events("target.cancelled", target="alice")
        partial = len(calendar_hrefs(str(tgt["url"]), auth))

        daemon.start()
        eventually(
            lambda: any(
                e["created"] + e["updated"] + e["deleted"] + e["adopted"] == 0 and e["errors"] == 0
                for e in daemon.events("sync.cycle", target="alice")
            ),
            60, "a cycle with nothing left to do",
        )
        hrefs = calendar_hrefs(str(tgt["url"]), auth)
        with Store.open(f"sqlite:///{daemon.root / 'state.db'}") as store:
            records = store.records("alice")
        assert partial < len(hrefs)
        assert len(hrefs) == len(set(hrefs)) == len(records)
        assert {r.href for r in records.values()} == set(hrefs)
