"""``apexcal serve --config-dir DIR``: one stateless feed server over the workers' database.

It serves the feeds ``apexcal worker`` stores in PostgreSQL with the URLs,
tokens, ETag/304, gzip and ``SOURCE`` of the daemon's own server
(:mod:`apexcal.serve.database` for the caches and their bounds), plus
``/healthz``, ``/metrics`` and the sync webhook (``POST /hooks/<secret>/sync``
defers a pull on the workers' queue: :mod:`apexcal.serve.hooks`).  It holds no state of its own: run any number
of instances, on any machine, behind a load balancer.

* SIGTERM / SIGINT: ``STOPPING=1``, the listener closes, responses in flight
  finish, exit 0.
* SIGHUP: the config directory is read again (which organizations and feeds
  exist, their cache lifetimes); a bad one is logged and the old one kept.
  ``[state]`` and ``[server]`` need a restart.

SQLite is refused (one line, exit 2): with SQLite there are no workers, and
``apexcal run`` serves its feed files itself.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import structlog
from sqlalchemy.engine import make_url

from apexcal.clock import utcnow
from apexcal.config.directory import ConfigDir, load_config_dir
from apexcal.config.models import ServerConfig
from apexcal.errors import ConfigError, UsageError, is_operator_error
from apexcal.log import held_back
from apexcal.metrics import Metrics
from apexcal.notify import Notifier
from apexcal.serve.app import create_app
from apexcal.serve.database import Catalogue, DatabaseFeeds, DatabaseHealth, catalogue
from apexcal.serve.runner import serve_in_thread
from apexcal.state import Store

log = structlog.get_logger("apexcal.serve")

# Connections one server holds: requests are answered in a thread pool, but
# each holds a connection only for one short query.
_POOL_SIZE = 4
_POOL_OVERFLOW = 4
# How often the main thread looks at its signal flags (a handler also wakes it).
_WAKE_S = 1.0


def require_postgresql(url: str) -> None:
    """Raise :class:`UsageError` unless ``url`` is the PostgreSQL the workers write feeds into."""
    if make_url(url).get_backend_name() != "postgresql":
        raise UsageError(
            "apexcal serve needs PostgreSQL: set [state] url in apexcal.toml to "
            "postgresql+psycopg://… (feeds in the database are built by apexcal worker; "
            "with SQLite, apexcal run serves its feed files itself)"
        )


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as host and port; :class:`UsageError` otherwise."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen {listen}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


@dataclass
class _Signals:
    stop: threading.Event = field(default_factory=threading.Event)
    reload: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    received: int = 0

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.reload.set()
        else:
            self.received = signum
            self.stop.set()
        self.wake.set()


def _catalogue(configs: ConfigDir) -> Catalogue:
    return catalogue((org, config.feeds) for org, config in configs)


def run_serve(
    configs: ConfigDir,
    *,
    listen: str | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Serve the feeds of every organization of ``configs`` until SIGTERM/SIGINT; the exit code."""
    require_postgresql(configs.state_url)
    server = configs.shared.server or ServerConfig()
    host, port = parse_listen(listen) if listen else (server.host, server.port)
    current: dict[str, Any] = {"feeds": _catalogue(configs), "organizations": set(configs.organizations)}
    notifier = Notifier()
    signals = _Signals()
    previous = {
        signum: signal.signal(signum, signals.handler)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    }
    try:
        with ExitStack() as stack:
            # Start-up lines are held back: an operator error (a port in use, an
            # unusable database) is then the one line the command prints.
            with held_back(drop_if=is_operator_error):
                store = stack.enter_context(
                    Store.open(configs.state_url, pool_size=_POOL_SIZE, max_overflow=_POOL_OVERFLOW)
                )
                library = DatabaseFeeds(
                    store, lambda: current["feeds"], token_ttl=server.token_cache.total_seconds()
                )
                health = DatabaseHealth(
                    store, lambda: current["feeds"], stale_after=server.stale_after,
                    started_at=utcnow(), clock=utcnow,
                )
                metrics = Metrics()
                from apexcal.worker.trigger import worker_hooks

                hooks, close_hooks = worker_hooks(
                    url=configs.state_url, queue_schema=store.queue_schema(), secrets=store,
                    organizations=lambda: current["organizations"], registry=metrics.registry,
                )
                stack.callback(close_hooks)
                app = create_app(
                    hooks=hooks,
                    library=library,
                    health=health,
                    metrics_registry=metrics.registry,
                    metrics=metrics,
                    public_url=str(server.public_url) if server.public_url else None,
                    stale_is_unhealthy=False,
                )
                # A port in use is reported by the command line as one line; uvicorn's
                # own error line about it would be a second one.
                uvicorn_errors = logging.getLogger("uvicorn.error")
                uvicorn_errors.disabled = True
                try:
                    url = stack.enter_context(serve_in_thread(app, host=host, port=port))
                finally:
                    uvicorn_errors.disabled = False
                log.info(
                    "serve.listening", url=url, organizations=len(configs.organizations),
                    token_cache_seconds=server.token_cache.total_seconds(),
                )
            notifier.ready(status=f"serving {len(configs.organizations)} organization(s) on {url}")
            if on_ready is not None:
                on_ready(url)
            while not signals.stop.is_set():
                signals.wake.wait(_WAKE_S)
                signals.wake.clear()
                if signals.reload.is_set() and not signals.stop.is_set():
                    signals.reload.clear()
                    _reload(configs, current, notifier)
            notifier.stopping()
            log.info("serve.stopping", signal=signal.Signals(signals.received).name)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        notifier.close()
    log.info("serve.stopped")
    return 0


def _reload(configs: ConfigDir, current: dict[str, Any], notifier: Notifier) -> None:
    notifier.reloading()
    try:
        fresh = load_config_dir(configs.path)
    except ConfigError as exc:
        log.error("config.reload_failed", directory=str(configs.path),
                  problems=[str(p) for p in exc.problems])
    else:
        if fresh.shared.state != configs.shared.state or fresh.shared.server != configs.shared.server:
            log.warning("config.reload_needs_restart", keys=["state", "server"])
        current["feeds"] = _catalogue(fresh)
        current["organizations"] = set(fresh.organizations)
        log.info("config.reloaded", organizations=len(fresh.organizations))
    notifier.ready()
