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

With ``[server] processes = N`` above 1, the process started serves and
starts N-1 more (fresh interpreters), all listening on the same port with
``SO_REUSEPORT``: the kernel spreads connections over them.  Signals reach
them through the first (SIGTERM/SIGINT stop all, SIGHUP reloads all); one
that dies is started again.  Each holds its own caches: a URL revoked through
any process stops everywhere within ``[server] token_cache``.

SQLite is refused (one line, exit 2): with SQLite there are no workers, and
``apexcal run`` serves its feed files itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
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


def _serve_child(config_dir: str, listen: str, log_level: str | None) -> None:
    """One more server process of ``[server] processes`` (a fresh interpreter): serve until SIGTERM."""
    from apexcal.log import configure

    os.environ.pop("NOTIFY_SOCKET", None)  # only the first process speaks to systemd
    configs = load_config_dir(Path(config_dir))
    shared_log = configs.shared.log
    configure(
        (log_level or shared_log.level).lower(),
        json=None if shared_log.format == "auto" else shared_log.format == "json",
    )
    raise SystemExit(run_serve(configs, listen=listen, child=True))


class _Processes:
    """The other server processes of ``[server] processes``, started, signalled and stopped together."""

    def __init__(self, count: int, config_dir: Path, listen: str, log_level: str | None) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._args = (str(config_dir), listen, log_level)
        self._running: list[BaseProcess] = [self._start() for _ in range(count)]

    def _start(self) -> BaseProcess:
        process = self._context.Process(
            target=_serve_child, args=self._args, name="apexcal-serve", daemon=False
        )
        process.start()
        return process

    @property
    def pids(self) -> list[int]:
        """The process ids of the other processes."""
        return [p.pid for p in self._running if p.pid is not None]

    def signal(self, signum: int) -> None:
        """Send ``signum`` to every other process."""
        for process in self._running:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    def restart_dead(self) -> None:
        """Start again any process that exited."""
        for index, process in enumerate(self._running):
            if not process.is_alive():
                log.warning("serve.process_exited", pid=process.pid, exit_code=process.exitcode)
                self._running[index] = self._start()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every other process and wait for them (SIGKILL after ``timeout``)."""
        self.signal(signal.SIGTERM)
        for process in self._running:
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join()


def run_serve(
    configs: ConfigDir,
    *,
    listen: str | None = None,
    on_ready: Callable[[str], None] | None = None,
    log_level: str | None = None,
    child: bool = False,
) -> int:
    """Serve the feeds of every organization of ``configs`` until SIGTERM/SIGINT; the exit code.

    ``[server] processes`` above 1 starts that many processes in all (the
    others with ``child``, which start none and listen on the same port);
    ``log_level`` is theirs too.
    """
    require_postgresql(configs.state_url)
    server = configs.shared.server or ServerConfig()
    host, port = parse_listen(listen) if listen else (server.host, server.port)
    shared_port = child or server.processes > 1
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
                    url = stack.enter_context(
                        serve_in_thread(app, host=host, port=port, reuse_port=shared_port, join=child)
                    )
                finally:
                    uvicorn_errors.disabled = False
                others = None
                if server.processes > 1 and not child:
                    # Port 0 became a port: the others bind that one.
                    bound = url.rpartition(":")[2]
                    shown = f"[{host}]" if ":" in host else host
                    others = _Processes(server.processes - 1, configs.path, f"{shown}:{bound}", log_level)
                    stack.callback(others.stop)
                log.info(
                    "serve.listening", url=url, organizations=len(configs.organizations),
                    token_cache_seconds=server.token_cache.total_seconds(),
                    processes=1 if child else server.processes,
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
                    if others is not None:
                        others.signal(signal.SIGHUP)
                if others is not None and not signals.stop.is_set():
                    others.restart_dead()
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
