"""``apexcal demo``: the whole product on loopback, with no config and no network.

Starts, in one temporary directory that is removed on exit:

* the API emulator (in this process, uvicorn in a thread), seeded with a few
  hundred sample activities around today for organization 27;
* Radicale (``python -m radicale``, the ``demo`` extra) as a subprocess with
  htpasswd users ``jane`` and ``john``;
* the daemon — the same code as ``apexcal run`` — from an in-memory config:
  two targets (Jane's and John's activities, each into a ``crm`` calendar the
  first cycle creates with MKCALENDAR) and two feeds (``team``, public, and
  ``team-busy``, free/busy only), every few seconds, with the feed server.

It prints, one per line on stdout (:func:`print_urls` documents the format),
the emulator URL and token, each CalDAV calendar with its credentials, and
each feed's http and webcal URL, then keeps syncing until SIGINT or SIGTERM.
The demo credentials and feed tokens are printed on purpose; they are still
registered with the log redactor, so log lines never show them.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
import structlog

from apexcal.errors import DemoError

log = structlog.get_logger("apexcal.demo")

DEMO_ORG = 27
DEMO_ACTIVITIES = 240
DEMO_INTERVAL = "5s"
# Radicale users → (CRM user id they follow, demo password).
DEMO_CALENDAR_USERS: dict[str, tuple[int, str]] = {
    "jane": (45, "jane-demo-password"),
    "john": (46, "john-demo-password"),
}
_RADICALE_START_S = 30.0



@dataclass(frozen=True, kw_only=True)
class Calendar:
    """One demo CalDAV calendar and its credentials."""

    name: str
    url: str
    username: str
    password: str


@dataclass(frozen=True, kw_only=True)
class Feed:
    """One demo feed and its secret URLs."""

    name: str
    http: str
    webcal: str


@dataclass(frozen=True, kw_only=True)
class DemoUrls:
    """Everything the demo prints."""

    emulator: str
    token: str
    organization_id: int
    calendars: tuple[Calendar, ...]
    feeds: tuple[Feed, ...]


def print_urls(urls: DemoUrls, out: TextIO) -> None:
    """Print the demo's URLs, one per line, space-separated fields.

    ::

        emulator <url> token=<token> organization_id=<id>
        caldav <name> <calendar url> username=<user> password=<password>
        feed <name> <http url>
        feed <name> <webcal url>
    """
    print(f"emulator {urls.emulator} token={urls.token} organization_id={urls.organization_id}",
          file=out)
    for cal in urls.calendars:
        print(f"caldav {cal.name} {cal.url} username={cal.username} password={cal.password}",
              file=out)
    for feed in urls.feeds:
        print(f"feed {feed.name} {feed.http}", file=out)
        print(f"feed {feed.name} {feed.webcal}", file=out)
    print("ready: change an activity through the emulator's API and watch it arrive; "
          "Ctrl-C stops the demo", file=out, flush=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def radicale(root: Path) -> Iterator[str]:
    """Run Radicale with the demo users and storage under ``root``; yield its base URL."""
    try:
        import radicale as _radicale  # noqa: F401  (only checking that it is installed)
    except ImportError:
        raise DemoError("the demo needs Radicale: pip install 'apexcal[demo]'") from None
    port = _free_port()
    htpasswd = root / "htpasswd"
    htpasswd.write_text("".join(f"{u}:{pw}\n" for u, (_, pw) in DEMO_CALENDAR_USERS.items()))
    conf = root / "radicale.conf"
    conf.write_text(
        f"[server]\nhosts = 127.0.0.1:{port}\n\n"
        f"[auth]\ntype = htpasswd\nhtpasswd_filename = {htpasswd}\n"
        "htpasswd_encryption = plain\ndelay = 0\n\n"
        "[rights]\ntype = owner_only\n\n"
        f"[storage]\nfilesystem_folder = {root / 'collections'}\n\n"
        "[logging]\nlevel = warning\nmask_passwords = True\n"
    )
    base = f"http://127.0.0.1:{port}/"
    with (root / "radicale.log").open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603  (our interpreter, our module, our file)
            [sys.executable, "-m", "radicale", "--config", str(conf)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root,
            start_new_session=True,  # a terminal's Ctrl-C reaches the demo, which stops it
            preexec_fn=_parent_death_signal(),
        )
    try:
        _wait_for(base, proc, root / "radicale.log")
        log.info("demo.radicale_started", url=base, pid=proc.pid)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child sent SIGTERM when the demo dies, however it dies.

    The demo stops Radicale itself on a clean exit; this covers SIGKILL and
    crashes, which would otherwise leave an orphaned server.  Linux only; the
    libc function is looked up before the fork, so the child only makes the
    system call.
    """
    if sys.platform != "linux":
        return None
    import ctypes
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    sigterm = int(signal.SIGTERM)

    def set_parent_death_signal() -> None:
        prctl(pr_set_pdeathsig, sigterm, 0, 0, 0)

    return set_parent_death_signal


def _wait_for(base: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + _RADICALE_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-500:]
            raise DemoError(f"Radicale exited at start: {tail.strip()}")
        try:
            httpx.request("OPTIONS", base, timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.05)  # not listening yet; bounded by the deadline
            continue
        return
    raise DemoError(f"Radicale did not answer within {_RADICALE_START_S:.0f} s")


def demo_config(root: Path, *, emulator_url: str, token: str, dav_url: str) -> dict[str, Any]:
    """The demo's config as a dict (validated by ``config_from_dict``)."""
    return {
        "source": {"base_url": emulator_url, "token": token, "organization_id": DEMO_ORG},
        "state": {"url": f"sqlite:///{root / 'state.db'}"},
        "sync": {
            "interval": DEMO_INTERVAL,
            "jitter": "0s",
            "reconcile_interval": "1m",
            "shutdown_timeout": "10s",
            "backoff_max": "30s",
        },
        "mapping": {"geocoder": "offline"},
        "targets": [
            {
                "name": user,
                "url": f"{dav_url}{user}/crm/",
                "username": user,
                "password": password,
                "create": True,
                "filter": {"assigned_to_user_id": crm_user},
            }
            for user, (crm_user, password) in DEMO_CALENDAR_USERS.items()
        ],
        "feeds": [
            {"name": "team", "path": str(root / "feeds" / "team.ics"), "privacy": "public",
             "calendar_name": "Acme Sales – team", "refresh_interval": "5m"},
            {"name": "team-busy", "path": str(root / "feeds" / "team-busy.ics"), "privacy": "busy",
             "calendar_name": "Acme Sales – busy", "refresh_interval": "5m"},
        ],
        "server": {"listen": "127.0.0.1:0", "stale_after": "1m"},
        "log": {"level": "info"},
    }


def _issue_tokens(state_url: str, feeds: list[str]) -> dict[str, str]:
    """A fresh secret token for each feed, stored (hashed) in the demo's state store."""
    from apexcal.clock import utcnow
    from apexcal.feeds.tokens import hash_token, new_token
    from apexcal.log import redactor
    from apexcal.state import Store

    tokens = {name: new_token() for name in feeds}
    redactor.add(*tokens.values())
    with Store.open(state_url) as store:
        for name, token in tokens.items():
            store.add_feed_token(name, hash_token(token), "demo", utcnow())
    return tokens


def run_demo(*, log_level: str = "info", out: TextIO | None = None,
             activities: int = DEMO_ACTIVITIES) -> int:
    """Run the demo until SIGINT/SIGTERM; return the exit code (0)."""
    from apexcal.config import config_from_dict
    from apexcal.daemon import Daemon, exit_now
    from apexcal.emulator import EmulatorState, create_app, serve_in_thread
    from apexcal.emulator.state import DEMO_TOKEN
    from apexcal.feeds.tokens import feed_urls
    from apexcal.log import configure, configure_from, redactor

    out = out or sys.stdout
    daemon: Daemon | None = None
    configure(log_level)
    redactor.add(DEMO_TOKEN, *(pw for _, pw in DEMO_CALENDAR_USERS.values()))
    root = Path(tempfile.mkdtemp(prefix="apexcal-demo-"))
    try:
        with ExitStack() as stack:
            state = EmulatorState()
            state.seed(DEMO_ORG, activities, seed=1)
            emulator_url = stack.enter_context(serve_in_thread(create_app(state)))
            (root / "radicale").mkdir()
            dav_url = stack.enter_context(radicale(root / "radicale"))
            raw = demo_config(root, emulator_url=emulator_url, token=DEMO_TOKEN, dav_url=dav_url)
            raw["log"]["level"] = log_level
            config = config_from_dict(raw, file="<demo>")
            configure_from(config.log)
            tokens = _issue_tokens(config.state.url, [f.name for f in config.feeds])
            daemon = Daemon(config)
            daemon.start()
            assert daemon.server_url is not None
            urls = DemoUrls(
                emulator=emulator_url,
                token=DEMO_TOKEN,
                organization_id=DEMO_ORG,
                calendars=tuple(
                    Calendar(name=t.name, url=t.url, username=t.username or "",
                             password=t.password.get_secret_value() if t.password else "")
                    for t in config.targets
                ),
                feeds=tuple(
                    Feed(name=name, http=(u := feed_urls(daemon.server_url, token, name)).https,
                         webcal=u.webcal)
                    for name, token in tokens.items()
                ),
            )
            print_urls(urls, out)
            code = daemon.serve()
    finally:
        shutil.rmtree(root, ignore_errors=True)
        with contextlib.suppress(OSError):
            out.flush()
    if daemon is not None and not daemon.clean_exit:
        exit_now(code)
    return code


__all__ = ["DemoError", "DemoUrls", "demo_config", "print_urls", "radicale", "run_demo"]
