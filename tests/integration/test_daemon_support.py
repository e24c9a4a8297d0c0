"""Shared set-up of the daemon tests: ``apexcal run`` as a real subprocess, a notify socket, polling.

No tests live here.  :class:`DaemonProcess` starts the daemon with a config
written to disk (secrets in files), its stdout and stderr captured to files,
``NOTIFY_SOCKET`` pointing at a :class:`NotifySocket` the test bound in the
abstract namespace.  Waiting is always polling a condition with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from xml.etree import ElementTree

import httpx

from apexcal.clock import utcnow
from apexcal.feeds.tokens import hash_token, new_token
from apexcal.state import Store

APEXCAL = str(Path(sys.executable).parent / "apexcal")
T = TypeVar("T")


def eventually(check: Callable[[], T | None], timeout: float, what: str, step: float = 0.1) -> T:
    """Poll ``check`` until it returns a true value; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(step)  # polling interval, not synchronisation: the deadline bounds it


def free_port() -> int:
    """A port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NotifySocket:
    """A unix datagram socket in the abstract namespace, standing in for systemd's notify socket.

    A thread drains it as messages arrive, as systemd does: a datagram socket
    whose queue fills up makes the sender wait.
    """

    def __init__(self) -> None:
        self.name = f"@apexcal-test-{uuid.uuid4().hex}"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind("\0" + self.name[1:])
        self._sock.settimeout(0.2)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.messages: list[dict[str, str]] = []
        self._thread = threading.Thread(target=self._read, name="notify-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._lock:
                self.messages.append(fields)

    def received(self) -> list[dict[str, str]]:
        """Every message so far, oldest first."""
        with self._lock:
            return list(self.messages)

    def wait_for(self, key: str, value: str = "1", *, after: int = 0, timeout: float = 20.0) -> int:
        """Wait for a message with ``key=value`` at index ≥ ``after``; return its index."""

        def find() -> int | None:
            for index, message in enumerate(self.received()):
                if index >= after and message.get(key) == value:
                    return index + 1  # +1 so that index 0 is truthy
            return None

        return eventually(find, timeout, f"notify {key}={value}") - 1

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._sock.close()


@dataclass(kw_only=True)
class DaemonProcess:
    """``apexcal run`` as a subprocess with captured output."""

    config: Path
    root: Path
    notify: NotifySocket
    log_level: str = "debug"
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def stdout_path(self) -> Path:
        return self.root / f"stdout-{self.runs}.log"

    @property
    def stderr_path(self) -> Path:
        return self.root / f"stderr-{self.runs}.log"

    def start(self) -> None:
        """Start the daemon (a new run: new output files)."""
        self.runs += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHDOG_")}
        env.update({"NOTIFY_SOCKET": self.notify.name, **self.env})
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [APEXCAL, "run", "--config", str(self.config), "--log-level", self.log_level],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Make sure the process is gone (SIGKILL after a bounded SIGTERM)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)

    def output(self) -> str:
        """Everything written to stdout and stderr by every run so far."""
        parts = []
        for run in range(1, self.runs + 1):
            for name in (f"stdout-{run}.log", f"stderr-{run}.log"):
                path = self.root / name
                if path.exists():
                    parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines of the current run (non-JSON lines are kept as ``{"raw": ...}``)."""
        found = []
        for line in self.stderr_path.read_text(errors="replace").splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                found.append({"raw": line})
        return found

    def events(self, event: str, **match: Any) -> list[dict[str, Any]]:
        """The log lines of ``event`` whose keys equal ``match``."""
        return [
            line for line in self.logs()
            if line.get("event") == event and all(line.get(k) == v for k, v in match.items())
        ]

    def wait_event(self, event: str, timeout: float = 20.0, *, after: int = 0, **match: Any) -> dict[str, Any]:
        """Wait for the ``after``-th+1 log line of ``event`` matching ``match``."""

        def find() -> dict[str, Any] | None:
            if not self.alive:
                raise AssertionError(f"daemon exited ({self.proc and self.proc.returncode}):\n"
                                     + self.stderr_path.read_text(errors="replace")[-3000:])
            lines = self.events(event, **match)
            return lines[after] if len(lines) > after else None

        return eventually(find, timeout, f"log event {event} {match}")


def write_config(
    path: Path,
    *,
    root: Path,
    api_url: str,
    token: str,
    targets: list[dict[str, Any]],
    feeds: list[str] = (),  # type: ignore[assignment]
    port: int,
    interval: str = "2s",
    extra_sync: str = "",
    stale_after: str = "30s",
    broken: bool = False,
) -> None:
    """Write a daemon config: secrets in files beside it, feeds under ``root/feeds``."""
    token_file = root / "api-token"
    token_file.write_text(token + "\n")
    lines = [
        "[source]",
        f'base_url = "{api_url}"',
        f'token_file = "{token_file}"',
        "organization_id = 27",
        'timeout = "5s"',
        "",
        "[state]",
        f'url = "sqlite:///{root / "state.db"}"',
        "",
        "[sync]",
        f'interval = "{"soon" if broken else interval}"',
        'jitter = "0s"',
        'reconcile_interval = "1h"',
        'shutdown_timeout = "8s"',
        extra_sync,
        "",
    ]
    for target in targets:
        password_file = root / f"{target['name']}-dav"
        password_file.write_text(target["password"] + "\n")
        lines += [
            "[[targets]]",
            f'name = "{target["name"]}"',
            f'url = "{target["url"]}"',
            f'username = "{target["username"]}"',
            f'password_file = "{password_file}"',
            'tasks_as = "todos"',
        ]
        if "user" in target:
            lines += ["[targets.filter]", f"assigned_to_user_id = {target['user']}"]
        lines.append("")
    for name in feeds:
        lines += [
            "[[feeds]]",
            f'name = "{name}"',
            f'path = "{root / "feeds" / (name + ".ics")}"',
            'privacy = "public"',
            "window = { past_days = 3650, future_days = 3650 }",
            "",
        ]
    lines += [
        "[server]",
        f'listen = "127.0.0.1:{port}"',
        f'stale_after = "{stale_after}"',
        "",
    ]
    path.write_text("\n".join(lines))


def issue_feed_token(root: Path, feed: str) -> str:
    """A feed token stored (hashed) in the daemon's state store, created before the daemon starts."""
    token = new_token()
    with Store.open(f"sqlite:///{root / 'state.db'}") as store:
        store.add_feed_token(feed, hash_token(token), "test", utcnow())
    return token


_PROPFIND = b"""<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>"""


def calendar_hrefs(url: str, auth: tuple[str, str] | None) -> list[str]:
    """The member hrefs (``*.ics``) of a calendar collection, by PROPFIND depth 1."""
    response = httpx.request(
        "PROPFIND", url, content=_PROPFIND, auth=auth,
        headers={"Depth": "1", "Content-Type": "application/xml"}, timeout=10,
    )
    if response.status_code == 404:
        return []
    assert response.status_code == 207, response.text[:300]
    tree = ElementTree.fromstring(response.content)  # noqa: S314  (our own Radicale on loopback)
    hrefs = [el.text or "" for el in tree.iter("{DAV:}href")]
    return [h for h in hrefs if h.endswith(".ics")]


def get_object(url: str, auth: tuple[str, str] | None) -> bytes | None:
    """The body of a calendar object, or None when absent."""
    response = httpx.get(url, auth=auth, timeout=10)
    return response.content if response.status_code == 200 else None


@contextmanager
def daemon_process(**kwargs: Any) -> Iterator[DaemonProcess]:
    """A :class:`DaemonProcess`, stopped (and its notify socket closed) afterwards."""
    process = DaemonProcess(**kwargs)
    try:
        yield process
    finally:
        process.stop()
        process.notify.close()
