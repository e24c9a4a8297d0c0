"""The daemon's parts on their own: backoff arithmetic, job specs, the notify protocol over a real socket."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apexcal.config import Config, config_from_dict
from apexcal.daemon import JobHealth, backoff_delay, job_specs, retry_policy
from apexcal.notify import Notifier, watchdog_interval
from tests.fixtures.emulator import EmulatorHandle

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
seconds = st.integers(min_value=1, max_value=86_400).map(lambda s: timedelta(seconds=s))


class TestBackoff:
    def test_delay_doubles_from_the_interval_up_to_the_ceiling(self) -> None:
        """1, 2, 4, 8 intervals, then the ceiling."""
        got = [backoff_delay(timedelta(seconds=10), n, timedelta(seconds=60)).total_seconds()
               for n in range(7)]
        assert got == [0, 10, 20, 40, 60, 60, 60]

    @given(interval=seconds, ceiling=seconds, failures=st.integers(min_value=1, max_value=10_000))
    def test_delay_is_bounded_by_interval_and_ceiling(
        self, interval: timedelta, ceiling: timedelta, failures: int
    ) -> None:
        """Never shorter than the interval, never longer than max(ceiling, interval)."""
        delay = backoff_delay(interval, failures, ceiling)
        assert interval <= delay <= max(ceiling, interval)

    @given(interval=seconds, ceiling=seconds, failures=st.integers(min_value=1, max_value=60))
    def test_delay_never_shrinks_as_failures_grow(
        self, interval: timedelta, ceiling: timedelta, failures: int
    ) -> None:
        """One more failure never waits less."""
        assert backoff_delay(interval, failures + 1, ceiling) >= backoff_delay(interval, failures, ceiling)

    def test_job_skips_firings_while_backing_off_and_resets_on_success(self) -> None:
        """After failures the job is not due until not_before; a success clears the failures."""
        interval, ceiling = timedelta(seconds=5), timedelta(minutes=1)
        health = JobHealth().failed(NOW, "boom", interval=interval, ceiling=ceiling)
        health = health.failed(NOW, "boom", interval=interval, ceiling=ceiling)
        assert health.failures == 2
        assert not health.due(NOW + timedelta(seconds=9))
        assert health.due(NOW + timedelta(seconds=10))
        assert health.failing_since == NOW
        recovered = health.succeeded(NOW + timedelta(seconds=10))
        assert (recovered.failures, recovered.not_before) == (0, None)
        assert recovered.due(NOW)


class TestJobSpecs:
    def test_one_job_per_target_and_feed_with_their_intervals(self, tmp_path: Path) -> None:
        """Targets and feeds get their own interval, else sync.interval."""
        config = config_from_dict({
            "source": {"organization_id": 27},
            "sync": {"interval": "5m"},
            "targets": [{"name": "a", "url": "http://h/a/"},
                        {"name": "b", "url": "http://h/b/", "interval": "1m"}],
            "feeds": [{"name": "team", "path": str(tmp_path / "team.ics"), "interval": "15m"}],
        })
        assert [(s.id, s.interval.total_seconds()) for s in job_specs(config)] == [
            ("target:a", 300), ("target:b", 60), ("feed:team", 900)
        ]

    def test_api_retries_fit_in_the_shutdown_bound(self) -> None:
        """A job's API retries end within a third of sync.shutdown_timeout."""
        config = config_from_dict({"source": {"organization_id": 27},
                                   "sync": {"shutdown_timeout": "9s", "interval": "1h"}})
        assert retry_policy(config, 3600).timeout == 3.0
        assert retry_policy(config, 2).timeout == 2.0


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound at a filesystem path, with that path."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


class TestNotifier:
    def test_messages_reach_a_path_socket(self, listener: tuple[socket.socket, str]) -> None:
        """READY with STATUS arrives as one datagram of KEY=value lines."""
        sock, path = listener
        notifier = Notifier({"NOTIFY_SOCKET": path})
        assert notifier.ready(status="2 targets\nall ok")
        assert sock.recv(4096) == b"READY=1\nSTATUS=2 targets all ok"
        assert notifier.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
        notifier.close()

    def test_abstract_namespace_address(self) -> None:
        """``@name`` is the abstract socket ``\\0name``."""
        name = f"apexcal-notify-{uuid.uuid4().hex}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind("\0" + name)
            sock.settimeout(5)
            notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
            assert notifier.reloading()
            message = sock.recv(4096).decode()
            notifier.close()
        assert message.startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert int(message.rsplit("=", 1)[1]) > 0

    def test_without_notify_socket_everything_is_a_no_op(self) -> None:
        """No NOTIFY_SOCKET: nothing is sent and nothing fails."""
        notifier = Notifier({})
        assert not notifier.enabled
        assert not notifier.ready()
        assert not notifier.watchdog()

    def test_vanished_socket_never_raises(self, tmp_path: Path) -> None:
        """A socket path that no longer exists: the send reports False, no exception."""
        notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
        assert notifier.enabled
        assert not notifier.status("x")
        notifier.close()

    def test_a_receiver_that_never_reads_does_not_stall_the_sender(
        self, listener: tuple[socket.socket, str]
    ) -> None:
        """Once the receiver's queue is full, a send gives up after the send timeout and says so."""
        from apexcal.notify import SEND_TIMEOUT_S

        _, path = listener
        notifier = Notifier({"NOTIFY_SOCKET": path})
        try:
            for _ in range(5000):
                started = time.monotonic()
                if not notifier.watchdog():
                    break
            else:
                pytest.fail("the receiver's queue never filled")
            assert time.monotonic() - started < SEND_TIMEOUT_S + 1.0
        finally:
            notifier.close()

    def test_watchdog_interval_is_half_the_period_for_this_process(self) -> None:
        """WATCHDOG_USEC=2s → ping every second; another WATCHDOG_PID → no pings."""
        assert watchdog_interval({"WATCHDOG_USEC": "2000000"}) == 1.0
        assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}) == 1.0
        assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
        assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
        assert watchdog_interval({}) is None


class TestFeedJob:
    def test_failed_and_recovered_feed_job_is_kept_for_status(
        self, tmp_path: Path, emulator: EmulatorHandle
    ) -> None:
        """A feed job that cannot pull records its error; the next good run records a success after it."""
        from apexcal.daemon.jobs import run_feed
        from apexcal.metrics import Metrics
        from apexcal.state import Store

        def config(base_url: str) -> Config:
            return config_from_dict({
                "source": {"organization_id": 27, "base_url": base_url, "token": emulator.token},
                "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
                "sync": {"shutdown_timeout": "3s"},
                "mapping": {"geocoder": "none"},
                "feeds": [{"name": "team", "path": str(tmp_path / "team.ics")}],
            })

        with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
            failed = run_feed(config(closed), "team", store, Metrics(), interval_seconds=1)
            assert failed.result == "failed"
            state = store.feed_status("team")
            assert state is not None
            assert state.last_error_kind == "ApiTransportError"
            assert state.last_success_at is None

            ok = run_feed(config(emulator.base_url), "team", store, Metrics(), interval_seconds=1)
            assert ok.result == "ok"
            state = store.feed_status("team")
            assert state is not None
            assert state.last_success_at is not None
            assert state.last_error_at is not None
            assert state.last_success_at > state.last_error_at
