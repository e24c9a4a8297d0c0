"""Signals of the daemon, handled in the main thread and never inside a handler.

Signals are turned into bytes on a socket pair (``signal.set_wakeup_fd``);
:func:`wait_for_stop` reads them in the main thread, between systemd watchdog
pings: SIGTERM and SIGINT end the wait (the daemon then shuts down), SIGHUP
reloads the config and waits on.  :meth:`Wakeup.request_stop` does what a
SIGTERM does, from any thread.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import time
from collections.abc import Callable, Iterator

from apexcal.daemon.process import ignore_signal
from apexcal.notify import Notifier

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Wakeup:
    """The socket pair signals are written to, and the main thread reads."""

    def __init__(self) -> None:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)

    def request_stop(self) -> None:
        """Ask the waiting main thread to stop, as SIGTERM would (from any thread)."""
        with contextlib.suppress(OSError):
            self._write.send(bytes([signal.SIGTERM]))

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Route SIGTERM, SIGINT and SIGHUP to the socket pair while the block runs."""
        previous = {sig: signal.signal(sig, ignore_signal) for sig in HANDLED_SIGNALS}
        old_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        try:
            yield
        finally:
            signal.set_wakeup_fd(old_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def wait(self, timeout: float | None) -> list[int]:
        """The signal numbers received within ``timeout`` seconds (None: until one arrives)."""
        readable, _, _ = select.select([self._read], [], [], timeout)
        return self._drain() if readable else []

    def _drain(self) -> list[int]:
        numbers: list[int] = []
        while True:
            try:
                chunk = self._read.recv(64)
            except BlockingIOError:
                return numbers
            if not chunk:
                return numbers
            numbers.extend(chunk)

    def close(self) -> None:
        """Close the socket pair."""
        for sock in (self._read, self._write):
            sock.close()


def wait_for_stop(
    wakeup: Wakeup,
    notifier: Notifier,
    *,
    reload: Callable[[], object],
    alive: Callable[[], bool],
) -> int:
    """Wait for SIGTERM or SIGINT (returned), reloading on SIGHUP and pinging the watchdog.

    The watchdog is pinged only while ``alive()`` vouches for the scheduler.
    """
    interval = notifier.watchdog_interval
    next_ping = time.monotonic()
    while True:
        timeout = None if interval is None else max(0.0, next_ping - time.monotonic())
        for number in wakeup.wait(timeout):
            if number in (signal.SIGTERM, signal.SIGINT):
                return number
            if number == signal.SIGHUP:
                reload()
        if interval is not None and time.monotonic() >= next_ping:
            if alive():
                notifier.watchdog()
            next_ping = time.monotonic() + interval
