"""The systemd notify protocol (``sd_notify(3)``): readiness, status, watchdog, reload, stop.

systemd passes the address of a datagram socket in ``$NOTIFY_SOCKET`` (a
path, or ``@name`` for the abstract namespace) and, when ``WatchdogSec=`` is
set, the watchdog period in ``$WATCHDOG_USEC`` (for ``$WATCHDOG_PID`` only).
Each message is one datagram of newline-separated ``KEY=value`` assignments.
Without ``$NOTIFY_SOCKET`` every call is a no-op, so the daemon runs the same
under a terminal, in a container or in tests; sending never raises (systemd
being gone must not stop a sync).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)

# STATUS= is shown by `systemctl status`; keep it to one readable line.
MAX_STATUS_CHARS = 400
# A datagram send blocks while the receiver's queue is full (a busy or stuck
# manager): give up after this long rather than stall the daemon's main loop.
SEND_TIMEOUT_S = 1.0


def _address(raw: str) -> str | None:
    """The socket address of a ``$NOTIFY_SOCKET`` value (``@x`` → abstract ``\\0x``)."""
    if raw.startswith("@"):
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    return None  # vsock and other forms are not used on a plain host


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Half the watchdog period in seconds when systemd expects pings from this process, else None."""
    env = os.environ if env is None else env
    raw = env.get("WATCHDOG_USEC", "")
    if not raw.isdigit() or int(raw) <= 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(raw) / 1_000_000 / 2


class Notifier:
    """Sends notify messages to systemd (no-op without ``$NOTIFY_SOCKET``)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        self._address = _address(raw) if raw else None
        self._socket: socket.socket | None = None
        if self._address is not None:
            try:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.settimeout(SEND_TIMEOUT_S)
            except OSError as exc:
                log.warning("notify.unavailable", error=type(exc).__name__)
        self.watchdog_interval = watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        """Whether messages go anywhere."""
        return self._socket is not None

    def send(self, **fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram; return whether it was sent."""
        if self._socket is None or self._address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            self._socket.sendto(message.encode("utf-8", "replace"), self._address)
        except OSError as exc:
            log.debug("notify.failed", error=type(exc).__name__)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up (or a reload) is complete."""
        if status is None:
            return self.send(READY="1")
        return self.send(READY="1", STATUS=_one_line(status))

    def status(self, text: str) -> bool:
        """``STATUS=``: a one-line summary shown by ``systemctl status``."""
        return self.send(STATUS=_one_line(text))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the service is alive."""
        return self.send(WATCHDOG="1")

    def reloading(self) -> bool:
        """``RELOADING=1`` with the monotonic timestamp newer systemd wants with it."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(RELOADING="1", MONOTONIC_USEC=str(usec))

    def stopping(self) -> bool:
        """``STOPPING=1``: shutdown has begun."""
        return self.send(STOPPING="1")

    def close(self) -> None:
        """Close the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_STATUS_CHARS else flat[: MAX_STATUS_CHARS - 1] + "…"
